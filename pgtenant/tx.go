package pgtenant

import (
	"context"
	"errors"
	"fmt"

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
// pool. A transaction that ran no statement commits without a round trip.
// Nested Begin creates a savepoint in the same scope.
type Tx struct {
	p       *Pool
	sc      scope
	conn    *pgx.Conn
	opts    pgx.TxOptions
	tx      pgx.Tx // nil until BEGIN was sent
	release func() // nil for a savepoint or a session transaction
	closed  bool
	s       *scoped
}

var _ pgx.Tx = (*Tx)(nil)

func (t *Tx) scoped() *scoped {
	if t.s == nil {
		t.s = &scoped{p: t.p, sc: t.sc, conn: func() *pgx.Conn { return t.conn }}
	}
	return t.s
}

// begin sends BEGIN and the scope now, for the calls that cannot carry them
// along with a statement.
func (t *Tx) begin(ctx context.Context) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	if t.tx != nil {
		return nil
	}
	tx, err := t.p.beginScoped(ctx, t.conn, t.sc, t.opts)
	if err != nil {
		return err
	}
	t.tx = tx
	return nil
}

// beginWith sends BEGIN, the scope and the first statement in one round trip
// and returns the batch positioned at the statement's result.
func (t *Tx) beginWith(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	if t.closed {
		return nil, pgx.ErrTxClosed
	}
	if err := t.scoped().check(ctx); err != nil {
		return nil, err
	}
	sql, args, opts, err := splitArgs(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	if len(opts) > 0 {
		return nil, errLazyOptions
	}
	name, err := t.p.statement(ctx, t.conn, t.sc, sql)
	if err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	b.BeginTx(t.opts)
	t.p.queueScope(b, t.sc)
	b.Queue(name, args...)
	br := t.conn.SendBatch(ctx, b)
	t.tx = br.Tx()
	for range 2 { // BEGIN, then the scope
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, err
		}
	}
	return br, nil
}

// errLazyOptions sends a first statement with explicit pgx options down the
// path that begins first.
var errLazyOptions = errors.New("pgtenant: options need an open transaction")

// lazy reports whether the next statement should carry BEGIN.
func (t *Tx) lazy() bool { return t.tx == nil && !t.closed && t.p.prepared }

// Begin starts a pseudo nested transaction (a savepoint) in the same scope.
func (t *Tx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.scoped().check(ctx); err != nil {
		return nil, err
	}
	if err := t.begin(ctx); err != nil {
		return nil, err
	}
	inner, err := t.tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &Tx{p: t.p, sc: t.sc, conn: t.conn, tx: inner}, nil
}

// Commit commits the transaction and returns the connection to the pool.
func (t *Tx) Commit(ctx context.Context) error {
	return t.end(func() error { return t.tx.Commit(ctx) })
}

// Rollback rolls the transaction back and returns the connection to the
// pool. Like pgx, it returns pgx.ErrTxClosed after Commit or Rollback, so it
// is safe to defer.
func (t *Tx) Rollback(ctx context.Context) error {
	return t.end(func() error { return t.tx.Rollback(ctx) })
}

func (t *Tx) end(finish func() error) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	var err error
	if t.tx != nil {
		err = finish()
	}
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
	if err := t.scoped().check(ctx); err != nil {
		return 0, err
	}
	if err := t.begin(ctx); err != nil {
		return 0, err
	}
	return copyStaged(ctx, t.tx, tableName, columnNames, rowSrc)
}

// SendBatch sends b inside the transaction.
func (t *Tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	// Begin first: the batch's statements are prepared in the scope.
	err := t.scoped().check(ctx)
	if err == nil {
		err = t.begin(ctx)
	}
	var mapped *pgx.Batch
	if err == nil {
		mapped, err = t.scoped().batch(ctx, b)
	}
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	return t.tx.SendBatch(ctx, mapped)
}

// LargeObjects returns the transaction's large object manager. It begins the
// transaction first if no statement has yet.
func (t *Tx) LargeObjects() pgx.LargeObjects {
	_ = t.begin(context.Background())
	if t.tx == nil {
		return pgx.LargeObjects{}
	}
	return t.tx.LargeObjects()
}

// Prepare prepares a named statement in the transaction, as pgx.Tx does.
func (t *Tx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.scoped().check(ctx); err != nil {
		return nil, err
	}
	if err := t.begin(ctx); err != nil {
		return nil, err
	}
	return t.tx.Prepare(ctx, name, sql)
}

// Exec runs sql in the transaction.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.lazy() {
		br, err := t.beginWith(ctx, sql, args)
		if err == nil {
			ct, err := br.Exec()
			if closeErr := br.Close(); err == nil {
				err = closeErr
			}
			return ct, err
		}
		if err != errLazyOptions {
			return pgconn.CommandTag{}, err
		}
	}
	if err := t.begin(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.scoped().exec(ctx, func(s string, a ...any) (pgconn.CommandTag, error) { return t.tx.Exec(ctx, s, a...) }, sql, args)
}

// Query runs sql in the transaction.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.lazy() {
		br, err := t.beginWith(ctx, sql, args)
		if err == nil {
			rows, err := br.Query()
			if err != nil {
				_ = br.Close()
				return errRows{err}, err
			}
			return &batchRows{Rows: rows, br: br}, nil
		}
		if err != errLazyOptions {
			return errRows{err}, err
		}
	}
	if err := t.begin(ctx); err != nil {
		return errRows{err}, err
	}
	return t.scoped().query(ctx, func(s string, a ...any) (pgx.Rows, error) { return t.tx.Query(ctx, s, a...) }, sql, args)
}

// QueryRow runs sql in the transaction; errors are deferred to Scan.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, _ := t.Query(ctx, sql, args...)
	return &row{rows: rows} // in a transaction a failed statement aborts it: no retry
}

// Conn returns the transaction's underlying connection.
func (t *Tx) Conn() *pgx.Conn { return t.conn }

// Tenant returns the tenant the transaction belongs to.
func (t *Tx) Tenant() tenant.Tenant { return t.sc.tenant }
