package tenant

import (
	"errors"
	"fmt"
)

// ErrNoTenant is returned by every tenant-scoped call in the SDK when its
// context carries no tenant (see [Require]). It is never answered with "all
// tenants" or with a tenant left over from an earlier call.
var ErrNoTenant = errors.New("tenant: no tenant in context")

// ErrInvalidID is matched (via errors.Is) by the *ValidationError that
// [ValidateID], [Tenant.Validate] and [New] return for a bad tenant ID.
var ErrInvalidID = errors.New("tenant: invalid tenant ID")

// ErrInvalidSlug is matched (via errors.Is) by the *ValidationError that
// [ValidateSlug], [Tenant.Validate] and [New] return for a bad tenant slug.
var ErrInvalidSlug = errors.New("tenant: invalid tenant slug")

// ErrNotFound is returned by a [Lookup] when no tenant answers to the key. The
// [Middleware] answers it with 404 Not Found, and [Cache] keeps it for its
// short negative TTL.
var ErrNotFound = errors.New("tenant: tenant not found")

// ErrSuspended is returned by a [Lookup] when the tenant exists but is not
// active. The [Middleware] answers it with 403 Forbidden, and [Cache] keeps it
// for its short negative TTL.
var ErrSuspended = errors.New("tenant: tenant suspended")

// ValidationError reports which rule a tenant ID or slug broke and what is
// allowed instead. It unwraps to [ErrInvalidID] or [ErrInvalidSlug].
type ValidationError struct {
	// Field is "id" or "slug".
	Field string
	// Value is the rejected input, shortened to 80 bytes.
	Value string
	// Reason is the rule that failed, e.g. "must start with a lowercase letter".
	Reason string
	// Err is ErrInvalidID or ErrInvalidSlug.
	Err error
}

func (e *ValidationError) Error() string {
	allowed := idRule
	if e.Field == "slug" {
		allowed = slugRule
	}
	return fmt.Sprintf("tenant: invalid %s %q: %s (allowed: %s)", e.Field, e.Value, e.Reason, allowed)
}

// Unwrap returns ErrInvalidID or ErrInvalidSlug.
func (e *ValidationError) Unwrap() error { return e.Err }
