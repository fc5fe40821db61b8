package pgtenant

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/tenant"
)

// ErrTenantMismatch is returned by a [Tx] or [Conn] method called with a
// context that carries a different tenant than the one the transaction or
// connection belongs to.
var ErrTenantMismatch = fmt.Errorf("pgtenant: context tenant differs from the transaction's tenant")

// scoped runs statements on a connection whose transaction or session already
// carries a tenant's scope. Each statement is prepared for the tenant's schema
// on first use and run by name afterwards. Tx and Conn share it.
type scoped struct {
	p    *Pool
	sc   scope
	conn func() *pgx.Conn
}

// check refuses a context that names another tenant. A context without a
// tenant is fine: the scope is already set.
func (s *scoped) check(ctx context.Context) error {
	if t, ok := tenant.FromContext(ctx); ok && t != s.sc.tenant {
		return fmt.Errorf("%w: %s, not %s", ErrTenantMismatch, t, s.sc.tenant)
	}
	return nil
}

// resolve maps sql to the name of its statement prepared for the tenant, and
// args to the arguments proper. With explicit pgx options (an exec mode,
// result formats) sql is returned as it is, options first.
func (s *scoped) resolve(ctx context.Context, sql string, args []any) (string, []any, error) {
	if err := s.check(ctx); err != nil {
		return "", nil, err
	}
	sql, args, opts, err := splitArgs(ctx, sql, args)
	if err != nil {
		return "", nil, err
	}
	if len(opts) > 0 || !s.p.prepared {
		return sql, append(opts, args...), nil
	}
	name, err := s.p.prepareInScope(ctx, s.conn(), stmtKey{schema: s.sc.key, sql: sql})
	return name, args, err
}

func (s *scoped) exec(ctx context.Context, run func(string, ...any) (pgconn.CommandTag, error), sql string, args []any) (pgconn.CommandTag, error) {
	name, args, err := s.resolve(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return run(name, args...)
}

func (s *scoped) query(ctx context.Context, run func(string, ...any) (pgx.Rows, error), sql string, args []any) (pgx.Rows, error) {
	name, args, err := s.resolve(ctx, sql, args)
	if err != nil {
		return errRows{err}, err
	}
	return run(name, args...)
}

// batch returns a copy of b whose queries name the tenant's statements.
func (s *scoped) batch(ctx context.Context, b *pgx.Batch) (*pgx.Batch, error) {
	out := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, len(b.QueuedQueries))}
	for i, q := range b.QueuedQueries {
		name, args, err := s.resolve(ctx, q.SQL, q.Arguments)
		if err != nil {
			return nil, fmt.Errorf("pgtenant: batch query %d: %w", i, err)
		}
		out.QueuedQueries[i] = &pgx.QueuedQuery{SQL: name, Arguments: args, Fn: q.Fn}
	}
	return out, nil
}

// Tx is a transaction in one tenant's scope, returned by [Pool.Begin] and
// [Pool.BeginTx] as a pgx.Tx. BEGIN and the tenant's settings are sent with
// the transaction's first statement, all in one round trip, and the settings
// last until Commit or Rollback, which also return the connection to the
// pool. A transaction that ran no statement ends without a round trip.
// Nested Begin creates a savepoint in the same scope.
type Tx struct {
	p       *Pool
	sc      scope
	conn    *pgx.Conn
	opts    pgx.TxOptions
	open    bool   // BEGIN has been sent
	closed  bool   // Commit or Rollback was called
	release func() // returns the connection; nil for savepoints and session transactions
	depth   int    // savepoint number; 0 for the transaction itself
	nested  int    // savepoints created below this one
	pgxTx   pgx.Tx // set when begun through pgx, for LargeObjects
	s       *scoped
}

var _ pgx.Tx = (*Tx)(nil)

func (t *Tx) scoped() *scoped {
	if t.s == nil {
		t.s = &scoped{p: t.p, sc: t.sc, conn: func() *pgx.Conn { return t.conn }}
	}
	return t.s
}

// begin sends BEGIN and the scope now, in one round trip, for the calls that
// cannot carry them along with a statement.
func (t *Tx) begin(ctx context.Context) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	if t.open {
		return nil
	}
	tx, err := t.p.beginScoped(ctx, t.conn, t.sc, t.opts)
	if err != nil {
		return err
	}
	t.open, t.pgxTx = true, tx
	return nil
}

// lazy reports whether the next statement should carry BEGIN and the scope.
func (t *Tx) lazy() bool { return !t.open && !t.closed && t.p.prepared }

// sendFirst sends BEGIN, the scope and the transaction's first statement in
// one write and returns the reader positioned at the statement's result.
func (t *Tx) sendFirst(ctx context.Context, sql string, args []any) (*pgconn.MultiResultReader, error) {
	if err := t.scoped().check(ctx); err != nil {
		return nil, err
	}
	c := t.conn
	sd, err := t.p.statementSD(ctx, c, t.sc, sql)
	if err != nil {
		return nil, err
	}
	st := t.p.state(c)
	if err := t.p.ensureScopeSD(ctx, c, st); err != nil {
		return nil, err
	}
	if err := st.eqb.Build(c.TypeMap(), sd, args); err != nil {
		return nil, fmt.Errorf("pgtenant: encode arguments: %w", err)
	}
	var b pgconn.Batch
	if t.opts.BeginQuery != "" {
		b.ExecParams(t.opts.BeginQuery, nil, nil, nil, nil)
	} else {
		beginSD, err := t.p.beginStatement(ctx, c, st, beginSQL(t.opts))
		if err != nil {
			return nil, err
		}
		b.ExecStatement(beginSD, nil, nil, nil)
	}
	b.ExecStatement(st.scopeSD, t.p.scopeValues(t.sc), nil, nil)
	b.ExecStatement(sd, st.eqb.ParamValues, st.eqb.ParamFormats, st.eqb.ResultFormats)
	mrr := c.PgConn().ExecBatch(ctx, &b)
	if !mrr.NextResult() {
		err = closeErr(mrr, t.sc.tenant)
	} else if _, err = mrr.ResultReader().Close(); err != nil {
		_ = mrr.Close()
	} else {
		err = readScope(ctx, c, mrr, t.sc)
	}
	t.open = !c.IsClosed() && c.PgConn().TxStatus() != 'I'
	if err != nil {
		return nil, err
	}
	if !mrr.NextResult() {
		return nil, closeErr(mrr, t.sc.tenant)
	}
	return mrr, nil
}

// beginStatement returns the BEGIN statement for sql prepared on c, preparing
// it on first use: a prepared BEGIN spares the server a parse per
// transaction. Without BeginQuery, TxOptions make at most 16 distinct
// statements.
func (p *Pool) beginStatement(ctx context.Context, c *pgx.Conn, st *connState, sql string) (*pgconn.StatementDescription, error) {
	if sd, ok := st.begins[sql]; ok {
		return sd, nil
	}
	if st.begins == nil {
		st.begins = make(map[string]*pgconn.StatementDescription)
	}
	sd, err := c.Prepare(ctx, "tenancy_begin_"+strconv.Itoa(len(st.begins)), sql)
	if err != nil {
		return nil, err
	}
	st.begins[sql] = sd
	return sd, nil
}

// beginSQL is the BEGIN statement for opts, as pgx writes it.
func beginSQL(opts pgx.TxOptions) string {
	if opts.BeginQuery != "" {
		return opts.BeginQuery
	}
	var b strings.Builder
	b.WriteString("begin")
	if opts.IsoLevel != "" {
		b.WriteString(" isolation level " + string(opts.IsoLevel))
	}
	if opts.AccessMode != "" {
		b.WriteString(" " + string(opts.AccessMode))
	}
	if opts.DeferrableMode != "" {
		b.WriteString(" " + string(opts.DeferrableMode))
	}
	return b.String()
}

// first reports whether sql, with args, can be the statement that carries
// BEGIN: explicit pgx options need the transaction open first.
func (t *Tx) first(ctx context.Context, sql string, args []any) (string, []any, bool, error) {
	if !t.lazy() {
		return sql, args, false, nil
	}
	stmt, stmtArgs, opts, err := splitArgs(ctx, sql, args)
	if err != nil {
		return "", nil, false, err
	}
	return stmt, stmtArgs, len(opts) == 0, nil
}

// ready checks that t can run a statement now, beginning it if need be.
func (t *Tx) ready(ctx context.Context) error {
	if err := t.scoped().check(ctx); err != nil {
		return err
	}
	return t.begin(ctx)
}

// Begin starts a pseudo nested transaction (a savepoint) in the same scope.
func (t *Tx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.ready(ctx); err != nil {
		return nil, err
	}
	t.nested++
	n := t.depth + t.nested
	if _, err := t.conn.Exec(ctx, "savepoint sp_"+strconv.Itoa(n)); err != nil {
		return nil, err
	}
	return &Tx{p: t.p, sc: t.sc, conn: t.conn, open: true, depth: n, pgxTx: t.pgxTx}, nil
}

// Commit commits the transaction (or releases the savepoint) and returns the
// connection to the pool. A failed transaction is rolled back by the server;
// Commit then returns pgx.ErrTxCommitRollback, as pgx does.
func (t *Tx) Commit(ctx context.Context) error {
	if t.depth > 0 {
		return t.end(ctx, "release savepoint sp_"+strconv.Itoa(t.depth))
	}
	return t.end(ctx, "commit")
}

// Rollback rolls the transaction (or savepoint) back and returns the
// connection to the pool. Like pgx, it returns pgx.ErrTxClosed after Commit
// or Rollback, so it is safe to defer.
func (t *Tx) Rollback(ctx context.Context) error {
	if t.depth > 0 {
		return t.end(ctx, "rollback to savepoint sp_"+strconv.Itoa(t.depth))
	}
	return t.end(ctx, "rollback")
}

func (t *Tx) end(ctx context.Context, sql string) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	var err error
	if t.open && !t.conn.IsClosed() {
		var ct pgconn.CommandTag
		ct, err = t.conn.Exec(ctx, sql)
		if err == nil && sql == "commit" && ct.String() == "ROLLBACK" {
			err = pgx.ErrTxCommitRollback
		}
	}
	// A connection left inside a transaction is destroyed by the pool on
	// release, never handed to the next tenant.
	if t.release != nil {
		t.release()
		t.release = nil
	}
	return err
}

// CopyFrom copies rows into tableName, resolved in the tenant's schema, with
// the COPY protocol. PostgreSQL refuses COPY FROM into tables with row level
// security, so the rows are staged in a temporary table and moved with one
// INSERT ... SELECT that checks every row against the policy. This needs the
// TEMPORARY privilege on the database.
func (t *Tx) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	if err := t.ready(ctx); err != nil {
		return 0, err
	}
	return copyStaged(ctx, t.conn, tableName, columnNames, rowSrc)
}

// SendBatch sends b inside the transaction.
func (t *Tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	// Begin first: the batch's statements are prepared in the scope.
	err := t.ready(ctx)
	var mapped *pgx.Batch
	if err == nil {
		mapped, err = t.scoped().batch(ctx, b)
	}
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	return t.conn.SendBatch(ctx, mapped)
}

// LargeObjects returns the transaction's large object manager. Call it before
// the transaction's first statement: it needs a transaction begun through
// pgx, and returns a zero LargeObjects afterwards.
func (t *Tx) LargeObjects() pgx.LargeObjects {
	if t.pgxTx == nil && !t.open {
		_ = t.begin(context.Background())
	}
	if t.pgxTx == nil {
		return pgx.LargeObjects{}
	}
	return t.pgxTx.LargeObjects()
}

// Prepare prepares a named statement on the transaction's connection, as
// pgx.Tx does.
func (t *Tx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.ready(ctx); err != nil {
		return nil, err
	}
	return t.conn.Prepare(ctx, name, sql)
}

// Exec runs sql in the transaction.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if stmt, stmtArgs, ok, err := t.first(ctx, sql, args); err != nil {
		return pgconn.CommandTag{}, err
	} else if ok {
		mrr, err := t.sendFirst(ctx, stmt, stmtArgs)
		if err != nil {
			return pgconn.CommandTag{}, err
		}
		ct, err := mrr.ResultReader().Close()
		if closeErr := mrr.Close(); err == nil {
			err = closeErr
		}
		return ct, err
	}
	if err := t.ready(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.scoped().exec(ctx, func(s string, a ...any) (pgconn.CommandTag, error) { return t.conn.Exec(ctx, s, a...) }, sql, args)
}

// Query runs sql in the transaction.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if stmt, stmtArgs, ok, err := t.first(ctx, sql, args); err != nil {
		return errRows{err}, err
	} else if ok {
		mrr, err := t.sendFirst(ctx, stmt, stmtArgs)
		if err != nil {
			return errRows{err}, err
		}
		rows := pgx.RowsFromResultReader(t.conn.TypeMap(), mrr.ResultReader())
		return &fastRows{Rows: rows, mrr: mrr, p: t.p, ctx: ctx, conn: t.conn}, nil
	}
	if err := t.ready(ctx); err != nil {
		return errRows{err}, err
	}
	return t.scoped().query(ctx, func(s string, a ...any) (pgx.Rows, error) { return t.conn.Query(ctx, s, a...) }, sql, args)
}

// QueryRow runs sql in the transaction; errors are deferred to Scan.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if stmt, stmtArgs, ok, err := t.first(ctx, sql, args); err != nil {
		return &row{rows: errRows{err}}
	} else if ok {
		r := &fastRow{p: t.p, ctx: ctx, sc: t.sc, sql: stmt, args: stmtArgs, conn: t.conn}
		r.mrr, r.err = t.sendFirst(ctx, stmt, stmtArgs)
		return r
	}
	rows, _ := t.Query(ctx, sql, args...)
	return &row{rows: rows} // in a transaction a failed statement aborts it: no retry
}

// Conn returns the transaction's underlying connection. A transaction that
// has not run a statement yet begins first, so that whatever is sent on the
// connection directly (CopyTo, say) runs inside the tenant's scope.
func (t *Tx) Conn() *pgx.Conn {
	if t.lazy() {
		_ = t.begin(context.Background())
	}
	return t.conn
}

// Tenant returns the tenant the transaction belongs to.
func (t *Tx) Tenant() tenant.Tenant { return t.sc.tenant }
