package pgtenant

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/tenant"
)

// scopeStmt names the statement, prepared once per connection, that sets the
// tenant's search_path, role and RLS setting for the current transaction.
const scopeStmt = "tenancy_scope"

// The scope statements. Every value is a parameter. role is reset to the
// session user for the transaction, so a SET ROLE left on a pooled
// connection cannot carry into a tenant's statement. The cast of the schema
// name to regnamespace fails (SQLSTATE 3F000) when the tenant's schema does
// not exist, so a deleted tenant's statement never falls through to a
// same-named table in a shared schema: PostgreSQL skips search_path entries
// that do not exist.
//
// When the pool's role is a member of no role, it cannot SET ROLE at all,
// and the role reset is left out (the ...Lean forms): one function call
// less per statement.
//
// With Config.TenantLimits the statement also sets the tenant's
// statement_timeout (an empty value keeps the session's), and with
// Config.TagSessions the application_name; both are more parameters of
// the same statement (scopeExtra), so they cost no round trip.
const (
	scopeSQLSchema     = "SELECT set_config('search_path', $1, true), set_config('role', 'none', true), set_config($2, $3, true), $4::pg_catalog.regnamespace"
	scopeSQLShared     = "SELECT set_config('role', 'none', true), set_config($1, $2, true)"
	scopeSQLSchemaLean = "SELECT set_config('search_path', $1, true), set_config($2, $3, true), $4::pg_catalog.regnamespace"
	scopeSQLSharedLean = "SELECT set_config($1, $2, true)"

	sessionSQLSchema = "SELECT set_config('search_path', $1, false), set_config($2, $3, false), $4::pg_catalog.regnamespace"
	sessionSQLShared = "SELECT set_config($1, $2, false)"
)

// scopeExtra returns the columns the scope statement gains for
// statement_timeout and application_name, numbering their parameters from
// first; local says whether they last for the transaction or the session.
func (p *Pool) scopeExtra(first int, local bool) string {
	var b strings.Builder
	n := first
	if p.cfg.limited {
		fmt.Fprintf(&b, ", CASE WHEN $%d = '' THEN NULL ELSE set_config('statement_timeout', $%d, %t) END", n, n, local)
		n++
	}
	if p.cfg.tag {
		fmt.Fprintf(&b, ", set_config('application_name', $%d, %t)", n, local)
	}
	return b.String()
}

// buildScopeTexts builds the pool's scope statements (New).
func (p *Pool) buildScopeTexts() {
	if p.cfg.mode == SharedTables {
		p.scopeTexts = [2]string{scopeSQLShared + p.scopeExtra(3, true), scopeSQLSharedLean + p.scopeExtra(3, true)}
		p.sessionText = sessionSQLShared + p.scopeExtra(3, false)
		return
	}
	p.scopeTexts = [2]string{scopeSQLSchema + p.scopeExtra(5, true), scopeSQLSchemaLean + p.scopeExtra(5, true)}
	p.sessionText = sessionSQLSchema + p.scopeExtra(5, false)
}

// scope is the tenant a call runs for. Building it costs nothing; the
// scope statement's arguments are derived from it when needed.
type scope struct {
	tenant tenant.Tenant
	// key names the tenant's schema in statement keys: the slug, since the
	// schema name is a function of it, or "" in SharedTables mode, where
	// statements do not vary by tenant.
	key string
	// lim is the tenant's budget (Config.TenantLimits), zero without.
	lim limits
}

func (p *Pool) scopeFor(t tenant.Tenant) scope {
	if p.cfg.mode == SharedTables {
		return scope{tenant: t}
	}
	return scope{tenant: t, key: t.Slug}
}

// args returns the arguments of the scope statement.
func (p *Pool) args(sc scope) []any {
	var args []any
	if p.cfg.mode == SharedTables {
		args = []any{p.cfg.setting, sc.tenant.ID}
	} else {
		// pg_temp goes last so a temporary table can never shadow a tenant table.
		schema := pgx.Identifier{SchemaName(sc.tenant)}.Sanitize()
		args = []any{schema + p.cfg.shared + ", pg_temp", p.cfg.setting, sc.tenant.ID, schema}
	}
	if p.cfg.limited {
		args = append(args, sc.lim.timeoutText())
	}
	if p.cfg.tag {
		args = append(args, SessionTag(sc.tenant))
	}
	return args
}

// SessionTag is the application_name a pool with Config.TagSessions gives
// the server session while it runs a statement of t: "tenant:" and the
// tenant ID, cut by the server to 63 bytes.
func SessionTag(t tenant.Tenant) string { return "tenant:" + t.ID }

func (p *Pool) scopeSQL() string {
	if p.noRoleReset.Load() {
		return p.scopeTexts[1]
	}
	return p.scopeTexts[0]
}

// queueScope queues the scope statement for sc on w, and after it what
// the sender's carrier adds; scopeResults reads their results.
func (p *Pool) queueScope(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, w *wire, sc scope) error {
	if err := sd.enc.scope(ctx, c, st, w, sc); err != nil {
		return err
	}
	sd.car.queue(w, p.scopeParams(sc))
	return nil
}

// scopeParams are the encoded arguments of the scope statement, cached per
// tenant: the search_path literal needs quoting and concatenation, which is
// worth doing once.
type scopeParams struct {
	values [][]byte
	// setLocal is the statement that carries the tenant beyond the
	// server (carrier.setLocal): Citus mode's SET LOCAL, or "".
	setLocal string
	// lim is the budget values was built for.
	lim limits
}

// scopeCache maps tenant.Tenant to *scopeParams. It is cleared when it passes
// maxScopeCache entries, which bounds it for fleets of any size.
type scopeCache struct {
	m sync.Map
	n atomic.Int64
}

const maxScopeCache = 8192

// scopeParams returns the cached scope arguments of sc's tenant, building them on
// first use.
func (p *Pool) scopeParams(sc scope) *scopeParams {
	if v, ok := p.scopes.m.Load(sc.tenant); ok {
		if sp := v.(*scopeParams); sp.lim == sc.lim {
			return sp
		}
	}
	args := p.args(sc)
	sp := &scopeParams{values: make([][]byte, len(args)), lim: sc.lim}
	for i, a := range args {
		sp.values[i] = []byte(a.(string))
	}
	sp.setLocal = p.send.car.setLocal(sc)
	if p.scopes.n.Add(1) > maxScopeCache {
		p.scopes.m.Clear()
		p.scopes.n.Store(1)
	}
	p.scopes.m.Store(sc.tenant, sp)
	return sp
}

// scopeFailed wraps a failure of the scope statement. A connection that lost
// its prepared scope statement is closed, and the pool replaces it.
//
// A syntax error is not the scope's: on the simple protocol the scope and the
// statement are one query text, which PostgreSQL parses as a whole before
// running any of it, so a syntax error in the statement is the text's first
// result. It is returned as it is, as pgx returns it.
func scopeFailed(ctx context.Context, c *pgx.Conn, sc scope, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "26000":
			_ = c.Close(context.WithoutCancel(ctx))
		case "42601":
			return err
		}
	}
	return &scopeError{tenant: sc.tenant, err: err}
}

// scopeError is a failure of the scope statement: nothing after it ran, and
// it is never retried as a stale statement would be. It matches
// [ErrTenantSchemaMissing] when the tenant's schema does not exist.
type scopeError struct {
	tenant tenant.Tenant
	err    error
}

func (e *scopeError) Error() string {
	if e.Is(ErrTenantSchemaMissing) {
		return fmt.Sprintf("pgtenant: tenant %s: schema %q does not exist (deleted, or not provisioned yet): %v", e.tenant, SchemaName(e.tenant), e.err)
	}
	return fmt.Sprintf("pgtenant: set scope of tenant %s: %v", e.tenant, e.err)
}

func (e *scopeError) Unwrap() error { return e.err }

// Is reports whether target is ErrTenantSchemaMissing and the scope failed
// because the tenant's schema does not exist.
func (e *scopeError) Is(target error) bool {
	var pgErr *pgconn.PgError
	return target == ErrTenantSchemaMissing && errors.As(e.err, &pgErr) && pgErr.Code == "3F000"
}
