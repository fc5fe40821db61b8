package pgtenant

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/tenant"
)

// resetSQL clears what session use may have left on a connection. It runs on
// checkout and on release of every [Conn]. RESET ALL leaves the role alone,
// hence RESET ROLE; DISCARD ALL would also drop pgx's prepared statements, so
// the parts of it that matter are spelled out.
const resetSQL = "CLOSE ALL; UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); " +
	"RESET ALL; RESET SESSION AUTHORIZATION; RESET ROLE; DISCARD TEMP; DISCARD SEQUENCES"

const resetTimeout = 5 * time.Second

// Conn is a connection held for session use in one tenant's scope, returned
// by [Pool.Acquire]: LISTEN/NOTIFY, session advisory locks, long sessions.
// The tenant's settings are set at the session level on checkout, and the
// session is reset on [Conn.Release]; a connection whose reset fails or that
// is released inside a transaction is closed rather than reused.
//
// Session use is not safe behind PgBouncer in transaction pooling mode, where
// consecutive statements may run on different server connections. The
// statement and transaction methods of [Pool] are.
type Conn struct {
	p  *Pool
	c  *pgxpool.Conn
	sc scope
	s  scoped
}

// Acquire takes a connection from the pool for session use by the context's
// tenant. Release it when done.
func (p *Pool) Acquire(ctx context.Context) (*Conn, error) {
	sc, err := p.require(ctx)
	if err != nil {
		return nil, err
	}
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	pc := c.Conn()
	sessionSQL := "SELECT set_config('search_path', $1, false), set_config($2, $3, false)"
	if p.cfg.mode == SharedTables {
		sessionSQL = "SELECT set_config($1, $2, false)"
	}
	_, err = pc.Exec(ctx, resetSQL)
	if err == nil {
		_, err = pc.Exec(ctx, sessionSQL, append([]any{pgx.QueryExecModeExec}, p.args(sc)...)...)
	}
	if err != nil {
		p.destroy(c)
		return nil, err
	}
	conn := &Conn{p: p, c: c, sc: sc}
	conn.s = scoped{p: p, sc: sc, conn: c.Conn}
	return conn, nil
}

// Release resets the session and returns the connection to the pool. The
// reset runs even if ctx of the last call was cancelled. It is safe to call
// more than once.
func (c *Conn) Release() {
	if c.c == nil {
		return
	}
	pc, held := c.c.Conn(), c.c
	c.c = nil
	if pc.IsClosed() || pc.PgConn().TxStatus() != 'I' {
		c.p.destroy(held)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
	defer cancel()
	if _, err := pc.Exec(ctx, resetSQL); err != nil {
		c.p.destroy(held)
		return
	}
	held.Release()
}

// destroy closes the connection instead of returning it to the pool. The pool
// does not call BeforeClose for a hijacked connection, so its state goes here.
func (p *Pool) destroy(c *pgxpool.Conn) {
	pc := c.Hijack()
	p.conns.Delete(pc)
	ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
	defer cancel()
	_ = pc.Close(ctx)
}

// Exec runs sql on the connection.
func (c *Conn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	pc := c.c.Conn()
	return c.s.exec(ctx, func(s string, a ...any) (pgconn.CommandTag, error) { return pc.Exec(ctx, s, a...) }, sql, args)
}

// Query runs sql on the connection.
func (c *Conn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	pc := c.c.Conn()
	return c.s.query(ctx, func(s string, a ...any) (pgx.Rows, error) { return pc.Query(ctx, s, a...) }, sql, args)
}

// QueryRow runs sql on the connection; errors are deferred to Scan.
func (c *Conn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, _ := c.Query(ctx, sql, args...)
	return &row{rows: rows}
}

// SendBatch sends b on the connection.
func (c *Conn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	mapped, err := c.s.batch(ctx, b)
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	return c.c.Conn().SendBatch(ctx, mapped)
}

// CopyFrom copies rows into tableName, resolved in the tenant's schema, in a
// transaction of its own; see [Tx.CopyFrom].
func (c *Conn) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	return copyInTx(ctx, c.Begin, tableName, columnNames, rowSrc)
}

// Begin starts a transaction on the connection; the session already carries
// the tenant's scope. The connection stays held until Release.
func (c *Conn) Begin(ctx context.Context) (pgx.Tx, error) {
	return c.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx starts a transaction with opts on the connection.
func (c *Conn) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	if err := c.s.check(ctx); err != nil {
		return nil, err
	}
	if _, err := c.c.Conn().Exec(ctx, beginSQL(opts)); err != nil {
		return nil, err
	}
	return &Tx{p: c.p, sc: c.sc, conn: c.c.Conn(), opts: opts, open: true}, nil
}

// Ping checks the connection.
func (c *Conn) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

// Conn returns the underlying pgx connection, e.g. for WaitForNotification.
// Statements sent on it directly are not mapped to the tenant's prepared
// statements, but run in the session's tenant scope all the same.
func (c *Conn) Conn() *pgx.Conn { return c.c.Conn() }

// Tenant returns the tenant the connection was acquired for.
func (c *Conn) Tenant() tenant.Tenant { return c.sc.tenant }
