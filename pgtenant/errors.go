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

// ErrTenantSchemaMissing is matched (errors.Is) by the error of a statement,
// transaction or Acquire whose tenant has no schema: it was deleted, or is
// not provisioned yet. The statement did not run. PostgreSQL would otherwise
// skip the missing schema on the search_path and resolve the statement's
// tables in the shared schemas.
var ErrTenantSchemaMissing = errors.New("pgtenant: the tenant's schema does not exist")

// ErrSessionState is matched by the *SessionStateError returned for a
// statement that would leave state on a connection shared by every tenant.
var ErrSessionState = errors.New("pgtenant: statement would leave session state on a shared connection")

// SessionStateError is returned, before any I/O, for a statement sent on the
// statement path ([Pool.Exec], [Pool.Query], [Pool.QueryRow],
// [Pool.SendBatch]) or in a [Tx] that would create state outliving it on the
// connection, which the next tenant (or [Pool.Unscoped], or the next
// [Pool.Acquire]) would then see: a session-level SET, a cursor WITH HOLD,
// a session advisory lock, LISTEN, a SQL-level PREPARE, a temporary table
// that outlives its transaction, and the like. It unwraps to
// [ErrSessionState].
type SessionStateError struct {
	// Construct names what was refused, e.g. "SET at session level" or
	// "pg_advisory_lock()".
	Construct string
	// Instead says what to use instead.
	Instead string
	// SQL is the statement's text.
	SQL string
	// Backstop is set when the server-side check found the change after
	// the statement ran, rather than the lexer before any I/O: the
	// statement's transaction was rolled back and its connection closed.
	Backstop bool
}

func (e *SessionStateError) Error() string {
	if e.Backstop {
		return fmt.Sprintf("pgtenant: %s; its transaction was rolled back and the connection closed; use %s", e.Construct, e.Instead)
	}
	return fmt.Sprintf("pgtenant: %s would leave state on a connection that other tenants reuse, or change the tenant's scope; use %s", e.Construct, e.Instead)
}

// Unwrap returns [ErrSessionState].
func (e *SessionStateError) Unwrap() error { return ErrSessionState }

// ErrTxLost is returned by a [Tx] whose transaction ended on the server
// without Commit or Rollback (a COMMIT sent as SQL through the raw
// connection, say): its statements would run outside the tenant's scope, so
// they are refused.
var ErrTxLost = errors.New("pgtenant: the transaction ended on the server outside Commit and Rollback")
