package tenant

import (
	"fmt"
	"slices"
)

const (
	// MaxIDLen is the longest tenant ID, in bytes.
	MaxIDLen = 64
	// MaxSlugLen is the longest tenant slug, in bytes. It keeps the schema name
	// "tenant_<slug>" well inside PostgreSQL's 63-byte identifier limit, so a
	// name is never silently truncated into another tenant's.
	MaxSlugLen = 48

	idRule   = "1-64 bytes of A-Z a-z 0-9 _ -"
	slugRule = "a lowercase letter, then lowercase letters, digits or _, at most 48 bytes, not a reserved word"
)

// reservedSlugs are names a tenant may not take because a service built on the
// SDK commonly uses them as subdomains, path segments or schema names of its own.
var reservedSlugs = []string{
	"admin", "api", "app", "default", "internal", "postgres", "public",
	"root", "shared", "system", "tenancy", "www",
}

// ReservedSlugs returns the slugs that [ValidateSlug] refuses, sorted.
func ReservedSlugs() []string { return slices.Clone(reservedSlugs) }

// Tenant identifies one tenant of a service.
//
// ID is the stable, opaque identifier stored in every tenant row (the RLS
// column) and used in Redis key prefixes. Slug is the human-readable name that
// also names the tenant's PostgreSQL schema. Both are validated by
// [Tenant.Validate]; a Tenant that passes is safe to embed in SQL identifiers
// (after quoting) and Redis keys.
type Tenant struct {
	ID   string
	Slug string
}

// New returns a Tenant after validating id and slug.
func New(id, slug string) (Tenant, error) {
	t := Tenant{ID: id, Slug: slug}
	if err := t.Validate(); err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// Validate reports whether t has a valid ID and slug. The error is a
// *ValidationError matching [ErrInvalidID] or [ErrInvalidSlug].
func (t Tenant) Validate() error {
	if err := ValidateID(t.ID); err != nil {
		return err
	}
	return ValidateSlug(t.Slug)
}

// IsZero reports whether t is the zero Tenant.
func (t Tenant) IsZero() bool { return t == Tenant{} }

// String returns "slug (id)" for logs and error messages.
func (t Tenant) String() string { return t.Slug + " (" + t.ID + ")" }

// ValidateID reports whether id is a valid tenant ID: 1 to 64 bytes of
// [A-Za-z0-9_-]. UUIDs fit. The alphabet has no ':', '{', '}', glob or escape
// character, so a Redis prefix built from an ID is injective, glob-safe and a
// valid cluster hash tag.
func ValidateID(id string) error {
	if id == "" {
		return invalid("id", id, "must not be empty")
	}
	if len(id) > MaxIDLen {
		return invalid("id", id, fmt.Sprintf("is %d bytes long, more than %d", len(id), MaxIDLen))
	}
	for i := 0; i < len(id); i++ {
		if !isIDByte(id[i]) {
			return invalid("id", id, fmt.Sprintf("byte %d (%s) is not allowed", i, showByte(id[i])))
		}
	}
	return nil
}

// ValidateSlug reports whether slug is a valid tenant slug: a lowercase ASCII
// letter followed by lowercase letters, digits or '_', at most [MaxSlugLen]
// bytes, and not one of [ReservedSlugs].
func ValidateSlug(slug string) error {
	if slug == "" {
		return invalid("slug", slug, "must not be empty")
	}
	if len(slug) > MaxSlugLen {
		return invalid("slug", slug, fmt.Sprintf("is %d bytes long, more than %d", len(slug), MaxSlugLen))
	}
	if c := slug[0]; c < 'a' || c > 'z' {
		return invalid("slug", slug, "must start with a lowercase letter a-z")
	}
	for i := 1; i < len(slug); i++ {
		c := slug[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return invalid("slug", slug, fmt.Sprintf("byte %d (%s) is not allowed", i, showByte(c)))
		}
	}
	if slices.Contains(reservedSlugs, slug) {
		return invalid("slug", slug, "is reserved")
	}
	return nil
}

func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// showByte renders c for an error message: printable ASCII quoted, anything
// else (NUL, the first byte of a UTF-8 sequence) in hex.
func showByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("0x%02x", c)
}

func invalid(field, value, reason string) error {
	if len(value) > 80 {
		value = value[:80] + "..."
	}
	sentinel := ErrInvalidID
	if field == "slug" {
		sentinel = ErrInvalidSlug
	}
	return &ValidationError{Field: field, Value: value, Reason: reason, Err: sentinel}
}
