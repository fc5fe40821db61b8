package pgtenant

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The server-side backstop. The lexer (classify.go) refuses what it knows
// would leave state or change the scope, and marks "check" every text it
// cannot bound. A checked statement is verified by the server, in the same
// round trip, by two statements of the pool's own:
//
//   - the guard, right after the statement in its transaction: the tenant
//     setting and search_path are still the scope's, the role is the
//     session's, standard_conforming_strings is on, and the pool role's
//     attributes, memberships and role/database settings are what they were
//     when the connection was made. If not, it raises an error, so the
//     transaction — the statement's writes, and any setting it changed,
//     session-level or not — is rolled back, and the caller gets a
//     *SessionStateError;
//   - the session check, after the transaction ends (on the pool's path the
//     statement runs in a block of its own, BEGIN ... COMMIT, for this; in a
//     Tx it follows COMMIT or ROLLBACK): the settings the pool and pgx rely
//     on are the session's own again, and the session holds no temporary
//     object, advisory lock, cursor WITH HOLD, SQL-level prepared statement
//     or LISTEN. If not, the connection is destroyed instead of reused; the
//     statement's result is still the caller's (it committed).
//
// Both raise their finding as an error of current_setting on a name that
// carries the pool's nonce, which is how the reader tells them from the
// statement's own errors.

// guardedSettings are the settings the session check compares with their
// values when the connection was made: a statement that changed one of them
// for the session would change how every later tenant's statements run.
var guardedSettings = []string{
	"search_path", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
	"idle_session_timeout", "default_transaction_read_only", "default_transaction_isolation",
	"default_transaction_deferrable", "DateStyle", "IntervalStyle", "TimeZone", "client_encoding",
	"bytea_output", "extra_float_digits", "standard_conforming_strings", "row_security",
	"synchronous_commit", "transform_null_equals", "work_mem", "temp_buffers", "plan_cache_mode",
	"check_function_bodies", "xmloption", "default_tablespace", "temp_tablespaces", "jit",
	"session_replication_role", "escape_string_warning", "backslash_quote", "array_nulls",
}

// backstop holds a Pool's backstop statements.
type backstop struct {
	nonce string
	// guard is the whole guard as one statement, for the paths that send
	// it as text: $1 the tenant ID, $2 the expected search_path, $3 the role
	// state.
	guard string
	// guardScope and guardRole are the guard in two statements, for the
	// paths that prepare it. PostgreSQL re-plans a prepared statement
	// whenever search_path differs from the one it was planned under, and
	// the guard runs under the tenant's: planning the role state's
	// catalog joins per call cost milliseconds. So guardScope checks the
	// scope ($1 the tenant ID, $2 the expected search_path) and, if it
	// holds, sets search_path (transaction-local) to the connection's
	// baseline ($3), which it was prepared under; guardRole, planned once,
	// checks the role state ($1) and sets search_path back to the scope's
	// ($2). Either raises the error and the transaction is rolled back.
	guardScope, guardRole string
	session               string // $1 the session settings
	// baseline reads, on a new connection, the session settings, the
	// role state and the search_path.
	baseline string
}

const (
	guardStmt     = "tenancy_guard"
	guardRoleStmt = "tenancy_guard_role"
	sessionStmt   = "tenancy_session"
)

// roleStateSQL is the pool role's attributes, memberships and role and
// database settings, as one text.
const roleStateSQL = `(SELECT pg_catalog.concat_ws('|', r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
		r.rolcanlogin, r.rolreplication, r.rolbypassrls,
		(SELECT pg_catalog.string_agg(m.roleid::text, ',' ORDER BY m.roleid) FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid),
		(SELECT pg_catalog.string_agg(s.setdatabase::text || ':' || s.setrole::text || ':' || pg_catalog.array_to_string(s.setconfig, ','), ';' ORDER BY s.setdatabase, s.setrole)
			FROM pg_catalog.pg_db_role_setting s WHERE s.setrole IN (0, r.oid)
			AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))))
	FROM pg_catalog.pg_roles r WHERE r.rolname = session_user)`

func newBackstop(setting string) backstop {
	var n [6]byte
	_, _ = rand.Read(n[:])
	nonce := "pgtenant " + hex.EncodeToString(n[:])
	// setting matched settingPattern: it cannot break out of the literal.
	var gucs strings.Builder
	gucs.WriteString("pg_catalog.concat_ws(',', coalesce(pg_catalog.current_setting('" + setting + "', true), ''), current_user")
	for _, g := range guardedSettings {
		gucs.WriteString(", pg_catalog.current_setting('" + g + "', true)")
	}
	gucs.WriteString(")")
	scopeChecks := `CASE WHEN pg_catalog.current_setting('` + setting + `', true) IS DISTINCT FROM $1::text THEN 'the tenant setting' END,
				CASE WHEN pg_catalog.current_setting('search_path') IS DISTINCT FROM $2::text THEN 'search_path' END,
				CASE WHEN current_user <> session_user THEN 'the role' END,
				CASE WHEN pg_catalog.current_setting('standard_conforming_strings') <> 'on' THEN 'standard_conforming_strings' END`
	return backstop{
		nonce: nonce,
		guard: verdictSQL(nonce, "changed", "NULL", scopeChecks+`,
				CASE WHEN `+roleStateSQL+` IS DISTINCT FROM $3::text THEN 'role attributes or settings' END`),
		guardScope: verdictSQL(nonce, "changed", "pg_catalog.set_config('search_path', $3::text, true)", scopeChecks),
		guardRole: verdictSQL(nonce, "changed", "pg_catalog.set_config('search_path', $2::text, true)",
			`CASE WHEN `+roleStateSQL+` IS DISTINCT FROM $1::text THEN 'role attributes or settings' END`),
		session: verdictSQL(nonce, "left", "NULL", `CASE WHEN `+gucs.String()+` IS DISTINCT FROM $1::text THEN 'session settings' END,
				CASE WHEN pg_catalog.pg_my_temp_schema() <> 0 AND EXISTS (SELECT FROM pg_catalog.pg_depend d
					WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = pg_catalog.pg_my_temp_schema())
					THEN 'temporary objects' END,
				CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_locks l WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'advisory') THEN 'advisory locks' END,
				CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_cursors c WHERE c.is_holdable) THEN 'cursors WITH HOLD' END,
				CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_prepared_statements ps WHERE ps.from_sql) THEN 'prepared statements' END,
				CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_listening_channels()) THEN 'LISTEN' END`),
		baseline: "SELECT " + gucs.String() + ", coalesce(" + roleStateSQL + ", ''), pg_catalog.current_setting('search_path')",
	}
}

// verdictSQL is a backstop statement: the findings of checks (a list of
// CASE expressions, each a finding's name or NULL) raised as an error whose
// message starts with the nonce and "the statement <verb> ", or, if there
// are none, the value of ok.
func verdictSQL(nonce, verb, ok, checks string) string {
	return `SELECT CASE WHEN r = '' THEN ` + ok + ` ELSE pg_catalog.current_setting('` + nonce + `: the statement ` + verb + ` ' || r) END
			FROM (SELECT pg_catalog.concat_ws(', ',
				` + checks + `) AS r) AS s`
}

// connBaseline is what a connection held when it was made.
type connBaseline struct {
	session, role, searchPath []byte
	// The prepared backstop, on a pool that prepares statements.
	guardSD, guardRoleSD, sessionSD *pgconn.StatementDescription
}

// learnBaseline reads a new connection's baseline and, on a pool that
// prepares statements, prepares the backstop's statements.
func (p *Pool) learnBaseline(ctx context.Context, c *pgx.Conn) error {
	var session, role, path string
	if err := c.QueryRow(ctx, p.bs.baseline, pgx.QueryExecModeSimpleProtocol).Scan(&session, &role, &path); err != nil {
		return fmt.Errorf("pgtenant: read the session's baseline: %w", err)
	}
	st := p.state(c)
	st.base = connBaseline{session: []byte(session), role: []byte(role), searchPath: []byte(path)}
	return nil
}

// guardArgs are the guard's arguments for sc on st's connection.
func (p *Pool) guardArgs(st *connState, sc scope) [][]byte {
	path := st.base.searchPath
	if p.cfg.mode == SchemaPerTenant {
		path = p.scopeParams(sc).values[0]
	}
	return [][]byte{[]byte(sc.tenant.ID), path, st.base.role}
}

// verdict reads the backstop's findings out of err, the first error of a
// statement's round trip: a guard's finding marks the connection dirty and
// becomes a *SessionStateError; a session check's finding marks it dirty and
// is no error of the caller's (what it reported ran and committed). Any other
// error is returned as it is.
func (p *Pool) verdict(st *connState, err error) error {
	if err == nil {
		return nil // before the target below, which escapes: no allocation per statement
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42704" {
		return err
	}
	msg, ok := strings.CutPrefix(pgErr.Message, `unrecognized configuration parameter "`+p.bs.nonce+": ")
	if !ok {
		return err
	}
	st.dirty = true
	msg = strings.TrimSuffix(msg, `"`)
	if strings.HasPrefix(msg, "the statement left ") {
		return nil
	}
	return &SessionStateError{Construct: msg + " (found by the server-side check)", Instead: scopeInstead, Backstop: true}
}
