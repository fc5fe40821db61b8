package pgtenant

import (
	"container/list"
	"context"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/tenant"
)

// scopeStmt names the statement, prepared once per connection, that sets the
// tenant's search_path, role and RLS setting for the current transaction.
const scopeStmt = "tenancy_scope"

// The scope statements. Every value is a parameter. role is reset to the
// session user for the transaction, so a SET ROLE left on a pooled
// connection cannot carry into a tenant's statement.
const (
	scopeSQLSchema = "SELECT set_config('search_path', $1, true), set_config('role', 'none', true), set_config($2, $3, true)"
	scopeSQLShared = "SELECT set_config('role', 'none', true), set_config($1, $2, true)"
)

// scope is the tenant a call runs for. Building it costs nothing; the
// scope statement's arguments are derived from it when needed.
type scope struct {
	tenant tenant.Tenant
	// key names the tenant's schema in statement keys: the slug, since the
	// schema name is a function of it, or "" in SharedTables mode, where
	// statements do not vary by tenant.
	key string
}

func (p *Pool) scopeFor(t tenant.Tenant) scope {
	if p.cfg.mode == SharedTables {
		return scope{tenant: t}
	}
	return scope{tenant: t, key: t.Slug}
}

// args returns the arguments of the scope statement.
func (p *Pool) args(sc scope) []any {
	if p.cfg.mode == SharedTables {
		return []any{p.cfg.setting, sc.tenant.ID}
	}
	// pg_temp goes last so a temporary table can never shadow a tenant table.
	path := pgx.Identifier{SchemaName(sc.tenant)}.Sanitize() + p.cfg.shared + ", pg_temp"
	return []any{path, p.cfg.setting, sc.tenant.ID}
}

func (p *Pool) scopeSQL() string {
	if p.cfg.mode == SharedTables {
		return scopeSQLShared
	}
	return scopeSQLSchema
}

// queueScope queues the scope statement: by name where the connection
// prepares statements, as SQL text where it must not (QueryExecModeExec or
// the simple protocol, e.g. behind a pooler that cannot keep them).
func (p *Pool) queueScope(b *pgx.Batch, sc scope) {
	if p.prepared {
		b.Queue(scopeStmt, p.args(sc)...)
	} else {
		b.Queue(p.scopeSQL(), p.args(sc)...)
	}
}

// stmtKey identifies a statement prepared for one tenant schema. Statements
// are prepared per schema so each is parsed and planned against that
// schema's tables: a statement is never re-planned when tenants alternate on
// a connection, and tenants whose tables differ in column types never share
// a plan (SQLSTATE 0A000, "cached plan must not change result type").
type stmtKey struct {
	schema string // scope.key
	sql    string
}

type stmtEntry struct {
	key  stmtKey
	name string
	sd   *pgconn.StatementDescription
}

// connState is what the pool remembers about one connection: the statements
// prepared on it, least recently used last. A connection is used by one
// goroutine at a time, so it needs no lock.
type connState struct {
	stmts   map[stmtKey]*list.Element
	lru     list.List
	seq     uint64
	scopeSD *pgconn.StatementDescription
	begins  map[string]*pgconn.StatementDescription // BEGIN statements by SQL
	eqb     pgx.ExtendedQueryBuilder
}

func (p *Pool) state(c *pgx.Conn) *connState {
	if st, ok := p.conns.Load(c); ok {
		return st.(*connState)
	}
	st := &connState{stmts: make(map[stmtKey]*list.Element)}
	p.conns.Store(c, st)
	return st
}

// cachedName returns the name of the statement prepared on c for key, if any.
func (st *connState) cachedName(key stmtKey) (string, bool) {
	el, ok := st.stmts[key]
	if !ok {
		return "", false
	}
	st.lru.MoveToFront(el)
	return el.Value.(*stmtEntry).name, true
}

// forget drops key after the server reported its statement unusable (the
// schema's tables changed under it, or it was deallocated), so the next use
// prepares it again.
func (p *Pool) forget(ctx context.Context, c *pgx.Conn, key stmtKey) {
	st := p.state(c)
	el, ok := st.stmts[key]
	if !ok {
		return
	}
	st.lru.Remove(el)
	delete(st.stmts, key)
	if c.PgConn().TxStatus() == 'I' && !c.IsClosed() {
		_ = c.Deallocate(context.WithoutCancel(ctx), el.Value.(*stmtEntry).name)
	}
}

// prepareInScope prepares sql on c, whose current transaction or session
// already carries the tenant's search_path, and returns its name.
func (p *Pool) prepareInScope(ctx context.Context, c *pgx.Conn, key stmtKey) (string, error) {
	st := p.state(c)
	if name, ok := st.cachedName(key); ok {
		return name, nil
	}
	st.seq++
	name := "tenancy_" + strconv.FormatUint(st.seq, 10)
	sd, err := c.Prepare(ctx, name, key.sql)
	if err != nil {
		return "", err
	}
	st.stmts[key] = st.lru.PushFront(&stmtEntry{key: key, name: name, sd: sd})
	for len(st.stmts) > p.cfg.capacity {
		old := st.lru.Back()
		e := old.Value.(*stmtEntry)
		st.lru.Remove(old)
		delete(st.stmts, e.key)
		if err := c.Deallocate(ctx, e.name); err != nil {
			return "", err
		}
	}
	return name, nil
}

// statement returns the name under which key is prepared on c, preparing it
// on first use inside a short transaction that carries the tenant's scope, so
// the statement is parsed against the tenant's own tables.
func (p *Pool) statement(ctx context.Context, c *pgx.Conn, sc scope, sql string) (string, error) {
	key := stmtKey{schema: sc.key, sql: sql}
	if name, ok := p.state(c).cachedName(key); ok {
		return name, nil
	}
	if sc.key == "" { // SharedTables: the search_path does not vary by tenant
		return p.prepareInScope(ctx, c, key)
	}
	tx, err := p.beginScoped(ctx, c, sc, pgx.TxOptions{})
	if err != nil {
		return "", err
	}
	name, err := p.prepareInScope(ctx, c, key)
	if rbErr := tx.Rollback(context.WithoutCancel(ctx)); err == nil && rbErr != nil {
		err = rbErr
	}
	return name, err
}

// beginScoped begins a transaction on c and sets the tenant's scope in the
// same round trip.
func (p *Pool) beginScoped(ctx context.Context, c *pgx.Conn, sc scope, opts pgx.TxOptions) (pgx.Tx, error) {
	b := &pgx.Batch{}
	b.BeginTx(opts)
	p.queueScope(b, sc)
	br := c.SendBatch(ctx, b)
	tx := br.Tx()
	_, err := br.Exec()
	if err == nil {
		if _, err = br.Exec(); err != nil {
			err = scopeFailed(ctx, c, sc, err)
		}
	}
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		if !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		return nil, err
	}
	return tx, nil
}

// isStaleStatement reports whether err says a prepared statement can no
// longer be used as it is: its tables changed type under it (0A000) or it no
// longer exists (26000).
func isStaleStatement(err error) bool {
	var pgErr *pgconn.PgError
	var se *scopeError
	return errors.As(err, &pgErr) && (pgErr.Code == "0A000" || pgErr.Code == "26000") && !errors.As(err, &se)
}

// splitArgs separates the pgx query options that lead args from the
// arguments proper. A QueryRewriter (such as pgx.NamedArgs) is applied here;
// other options (an explicit QueryExecMode, result formats) are returned so
// the caller can take the path that honours them.
func splitArgs(ctx context.Context, sql string, args []any) (string, []any, []any, error) {
	var opts []any
	for len(args) > 0 {
		switch a := args[0].(type) {
		case pgx.QueryRewriter:
			var err error
			sql, args, err = a.RewriteQuery(ctx, nil, sql, args[1:])
			if err != nil {
				return "", nil, nil, err
			}
			continue
		case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID:
			opts = append(opts, a)
			args = args[1:]
			continue
		}
		break
	}
	return sql, args, opts, nil
}
