package pgtenant

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrPrivilegedRole is matched by the *PrivilegedRoleError that [New] returns
// when the pool's role is a superuser or has BYPASSRLS (such a role silently
// ignores every row level security policy, so tenant isolation would rest on
// the search_path alone), or has CREATEROLE, CREATEDB or REPLICATION (each
// reaches beyond the tenants' rows: CREATEROLE can grant itself the owner
// role and turn row level security off).
var ErrPrivilegedRole = errors.New("pgtenant: role can reach beyond row level security")

// ErrInvalidConfig is returned by [New] when a [Config] field is unusable; the
// message names the field and what is allowed.
var ErrInvalidConfig = errors.New("pgtenant: invalid configuration")

// PrivilegedRoleError names the role and the attribute that made [New]
// refuse it. It unwraps to [ErrPrivilegedRole].
type PrivilegedRoleError struct {
	// Role is the role the pool connects as (session_user).
	Role string
	// Attribute is "SUPERUSER", "BYPASSRLS", "CREATEROLE", "CREATEDB" or
	// "REPLICATION".
	Attribute string
	// Why says what the attribute lets the role do.
	Why string
}

func (e *PrivilegedRoleError) Error() string {
	why := e.Why
	if why == "" {
		why = "it bypasses row level security"
	}
	return fmt.Sprintf("pgtenant: role %q has %s: %s; connect as a role with NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION (ALTER ROLE %s NO%s), or set Config.AllowPrivilegedRole",
		e.Role, e.Attribute, why, pgx.Identifier{e.Role}.Sanitize(), e.Attribute)
}

// Unwrap returns [ErrPrivilegedRole].
func (e *PrivilegedRoleError) Unwrap() error { return ErrPrivilegedRole }

// ErrRoleSetting is matched by the *RoleSettingError that [New] returns when
// the role or database settings (ALTER ROLE ... SET, ALTER DATABASE ... SET)
// that every new connection of the pool's role inherits carry a setting the
// pool relies on: search_path, the tenant setting, role or
// session_authorization, default_transaction_read_only on,
// standard_conforming_strings or row_security off, a client_encoding other
// than UTF8, or a statement_timeout, lock_timeout or
// idle_in_transaction_session_timeout above zero and below one second.
var ErrRoleSetting = errors.New("pgtenant: the role's connections start with a setting the pool relies on")

// RoleSettingError names the setting that made [New] refuse the pool's
// role. It unwraps to [ErrRoleSetting].
type RoleSettingError struct {
	// Role is the role the pool connects as (session_user).
	Role string
	// Scope is where the setting was made: "role" (ALTER ROLE ... SET),
	// "role in database" (ALTER ROLE ... IN DATABASE ... SET) or
	// "database" (ALTER DATABASE ... SET, for every role).
	Scope string
	// Name is the setting's name in lower case; Value its value.
	Name, Value string
	// Why says what the setting would break.
	Why string
}

func (e *RoleSettingError) Error() string {
	fix := "ALTER ROLE " + pgx.Identifier{e.Role}.Sanitize()
	switch e.Scope {
	case "role in database":
		fix += " IN DATABASE <database>"
	case "database":
		fix = "ALTER DATABASE <database>"
	}
	return fmt.Sprintf("pgtenant: new connections of role %q start with %s = %s (a %s setting): %s; remove it with %s RESET %s",
		e.Role, e.Name, e.Value, e.Scope, e.Why, fix, e.Name)
}

// Unwrap returns [ErrRoleSetting].
func (e *RoleSettingError) Unwrap() error { return ErrRoleSetting }

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
