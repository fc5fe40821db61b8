package pgtenant

import (
	"errors"
	"fmt"
)

// ErrPrivilegedRole is matched by the *PrivilegedRoleError that [New] returns
// when the pool's role is a superuser or has BYPASSRLS: such a role silently
// ignores every row level security policy, so tenant isolation would rest on
// the search_path alone.
var ErrPrivilegedRole = errors.New("pgtenant: role bypasses row level security")

// ErrInvalidConfig is returned by [New] when a [Config] field is unusable; the
// message names the field and what is allowed.
var ErrInvalidConfig = errors.New("pgtenant: invalid configuration")

// PrivilegedRoleError names the role and the attribute that made [New]
// refuse it. It unwraps to [ErrPrivilegedRole].
type PrivilegedRoleError struct {
	// Role is the role the pool connects as (current_user).
	Role string
	// Attribute is "SUPERUSER" or "BYPASSRLS".
	Attribute string
}

func (e *PrivilegedRoleError) Error() string {
	return fmt.Sprintf("pgtenant: role %q has %s and would bypass row level security; connect as a NOSUPERUSER NOBYPASSRLS role, or set Config.AllowPrivilegedRole", e.Role, e.Attribute)
}

// Unwrap returns [ErrPrivilegedRole].
func (e *PrivilegedRoleError) Unwrap() error { return ErrPrivilegedRole }
