package pgtenant

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/tenant"
)

// resetSQL clears what session use may have left on a connection. It runs on
// checkout and on release of every [Conn]. RESET ALL leaves the role alone,
// hence RESET ROLE; DISCARD ALL would also drop the pool's own prepared
// statements, so the parts of it that matter are spelled out, and SQL-level
// prepared statements (PREPARE) are deallocated by name.
const resetSQL = "CLOSE ALL; UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); " +
	"RESET ALL; RESET SESSION AUTHORIZATION; RESET ROLE; DISCARD TEMP; DISCARD SEQUENCES; " +
	"DO $tenancy$DECLARE r record; BEGIN FOR r IN SELECT name FROM pg_catalog.pg_prepared_statements WHERE from_sql LOOP " +
	"EXECUTE 'DEALLOCATE ' || pg_catalog.quote_ident(r.name); END LOOP; END$tenancy$"

const resetTimeout = 5 * time.Second

// Conn is a connection held for session use in one tenant's scope, returned
// by [Pool.Acquire]: LISTEN/NOTIFY, session advisory locks, long sessions.
// The tenant's settings are set at the session level on checkout, and the
// session is reset on [Conn.Release]; a connection whose reset fails or that
// is released inside a transaction is closed rather than reused.
//
// In Citus mode (see [CitusMode]) the session's settings carry the scope on
// the coordinator only: each statement, query and batch of a Conn runs in a
// block of its own that sets the tenant for the workers, and Begin/BeginTx
// set it in the transaction. Transaction control in SQL (BEGIN, COMMIT, ...)
// is refused there: begin with Conn.Begin. Statements sent on [Conn.Conn]
// directly, outside a Tx, do not carry the tenant to the workers: reads of
// distributed tables return no rows and writes are refused.
//
// Session use is not safe behind PgBouncer in transaction pooling mode, where
// consecutive statements may run on different server connections. The
// statement and transaction methods of [Pool] are.
type Conn struct {
	p  *Pool
	c  *pgxpool.Conn
	sc scope
	st *connState
}

// Acquire takes a connection from the pool for session use by the context's
// tenant. Release it when done.
func (p *Pool) Acquire(ctx context.Context) (*Conn, error) {
	sc, err := p.require(ctx)
	if err != nil {
		return nil, err
	}
	c, st, err := p.acquire(ctx, sc)
	if err != nil {
		return nil, err
	}
	pc := c.Conn()
	err = reset(ctx, pc)
	if err == nil {
		_, err = pc.Exec(ctx, p.sessionText, append([]any{pgx.QueryExecModeExec}, p.args(sc)...)...)
		if err != nil {
			err = &scopeError{tenant: sc.tenant, err: err}
		}
	}
	if err != nil {
		p.destroy(c)
		return nil, err
	}
	conn := &Conn{p: p, c: c, sc: sc, st: st}
	return conn, nil
}

// reset clears the session of pc (resetSQL) and the notifications pgx has
// buffered for it, which UNLISTEN does not reach.
func reset(ctx context.Context, pc *pgx.Conn) error {
	if _, err := pc.Exec(ctx, resetSQL, pgx.QueryExecModeSimpleProtocol); err != nil {
		return err
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		// With a context that is already done, pgx hands out what it has
		// buffered and reads nothing from the server.
		if n, _ := pc.WaitForNotification(done); n == nil {
			return nil
		}
	}
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
	c.st.named = nil // deallocated by the reset below, or gone with the connection
	if pc.IsClosed() || pc.PgConn().TxStatus() != 'I' || c.st.dirty {
		c.p.destroy(held)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
	defer cancel()
	if err := reset(ctx, pc); err != nil {
		c.p.destroy(held)
		return
	}
	l := takeLease(c.st)
	held.Release()
	c.p.endLease(l)
}

// destroy closes the connection instead of returning it to the pool. The pool
// does not call BeforeClose for a hijacked connection, so its state goes here.
func (p *Pool) destroy(c *pgxpool.Conn) {
	pc := c.Hijack()
	var l lease
	if st, ok := p.conns.LoadAndDelete(pc); ok {
		l = takeLease(st.(*connState))
	}
	defer p.endLease(l)
	ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
	defer cancel()
	_ = pc.Close(ctx)
}

// Exec runs sql on the connection.
func (c *Conn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	sql, args, sd, err := c.stmt(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ct, _, err := c.p.execStmt(ctx, c.c.Conn(), c.st, sd, c.sc, sessionClass, sql, args, sd.car.connStep(), pgx.TxOptions{})
	return ct, err
}

// stmt prepares a call: checks the tenant of ctx, applies query rewriters,
// refuses what outlives the session and what the carrier refuses, and
// picks the call's sender.
func (c *Conn) stmt(ctx context.Context, sql string, args []any) (string, []any, *sender, error) {
	if t, ok := tenant.FromContext(ctx); ok && t != c.sc.tenant {
		return "", nil, nil, fmt.Errorf("%w: %s, not %s", ErrTenantMismatch, t, c.sc.tenant)
	}
	sql, args, err := splitCall(ctx, sql, args)
	if err != nil {
		return "", nil, nil, err
	}
	if cls := c.p.classes.classify(sql); cls.beyond || cls.ddl {
		// Session state is the Conn's to keep, and its reset clears it;
		// what outlives the session (roles, settings, objects) is not.
		return "", nil, nil, &SessionStateError{Construct: cls.refused, Instead: cls.instead, SQL: sql}
	}
	sd := c.p.senderFor(args)
	if err := sd.car.checkConn(c.c.Conn(), sql); err != nil {
		return "", nil, nil, err
	}
	return sql, args, sd, nil
}

// Query runs sql on the connection.
func (c *Conn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	sql, args, sd, err := c.stmt(ctx, sql, args)
	if err != nil {
		return errRows{err}, err
	}
	pc := c.c.Conn()
	rows, _, err := c.p.queryStmt(ctx, pc, c.st, sd, c.sc, sessionClass, sql, args, sd.car.connStep(), pgx.TxOptions{}, sd.car.connFinish(ctx, pc))
	if err != nil {
		return errRows{err}, err
	}
	return rows, nil
}

// QueryRow runs sql on the connection; errors are deferred to Scan.
func (c *Conn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, _ := c.Query(ctx, sql, args...)
	return &row{rows: rows}
}

// SendBatch sends b on the connection.
func (c *Conn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t, ok := tenant.FromContext(ctx); ok && t != c.sc.tenant {
		return failedBatch(b, fmt.Errorf("%w: %s, not %s", ErrTenantMismatch, t, c.sc.tenant))
	}
	sd, pc := c.p.send, c.c.Conn()
	items, err := c.p.batchItems(ctx, b, true)
	for i := 0; err == nil && i < len(items.sql); i++ {
		err = sd.car.checkConn(pc, items.sql[i])
	}
	if err != nil {
		return failedBatch(b, err)
	}
	return c.p.sendBatch(ctx, pc, c.st, sd, c.sc, b, items, sd.car.connStep(), sd.car.connFinish(ctx, pc))
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
	if t, ok := tenant.FromContext(ctx); ok && t != c.sc.tenant {
		return nil, fmt.Errorf("%w: %s, not %s", ErrTenantMismatch, t, c.sc.tenant)
	}
	if err := c.p.send.car.beginConn(ctx, c.c.Conn(), c.st, c.p.scopeParams(c.sc), opts); err != nil {
		return nil, err
	}
	t := &Tx{p: c.p, sc: c.sc, conn: c.c.Conn(), st: c.st, opts: opts, open: true}
	t.top = t
	return t, nil
}

// Ping checks the connection.
func (c *Conn) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

// Conn returns the underlying pgx connection, e.g. for WaitForNotification.
// Statements sent on it directly are not mapped to the tenant's prepared
// statements, but run in the session's tenant scope all the same.
func (c *Conn) Conn() *pgx.Conn { return c.c.Conn() }

// Tenant returns the tenant the connection was acquired for.
func (c *Conn) Tenant() tenant.Tenant { return c.sc.tenant }
