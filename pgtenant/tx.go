package pgtenant

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/tenant"
)

// ErrTenantMismatch is returned by a [Tx] or [Conn] method called with a
// context that carries a different tenant than the one the transaction or
// connection belongs to.
var ErrTenantMismatch = fmt.Errorf("pgtenant: context tenant differs from the transaction's tenant")

// Tx is a transaction in one tenant's scope, returned by [Pool.Begin] and
// [Pool.BeginTx] as a pgx.Tx. BEGIN and the tenant's settings are sent with
// the transaction's first statement, all in one round trip, and the settings
// last until Commit or Rollback, which also return the connection to the
// pool. A transaction that ran no statement ends without a round trip.
// Nested Begin creates a savepoint in the same scope.
//
// It behaves as pgx's transaction does, whether a statement is new on the
// connection or already prepared: after a failed statement the transaction
// is aborted (SQLSTATE 25P02) and Commit returns pgx.ErrTxCommitRollback;
// after Commit or Rollback every method returns pgx.ErrTxClosed. Statements
// that would leave session state behind are refused with a
// *[SessionStateError], as on the pool's statement path.
type Tx struct {
	p    *Pool
	sc   scope
	pc   *pgxpool.Conn // returned at the end; nil for savepoints and session transactions
	conn *pgx.Conn
	st   *connState
	opts pgx.TxOptions
	top  *Tx // the transaction itself; savepoints point to it
	// open (top only) records that BEGIN ran on the server: from then on
	// the transaction is open or aborted, never idle, until it ends.
	open   bool
	closed bool
	depth  int // savepoint number; 0 for the transaction itself
	nested int // (top only) savepoints created so far
}

var _ pgx.Tx = (*Tx)(nil)

// usable checks that t can run a statement for ctx.
func (t *Tx) usable(ctx context.Context) error {
	if t.closed || t.top.closed {
		return pgx.ErrTxClosed
	}
	if tn, ok := tenant.FromContext(ctx); ok && tn != t.sc.tenant {
		return fmt.Errorf("%w: %s, not %s", ErrTenantMismatch, tn, t.sc.tenant)
	}
	if t.top.open && !t.conn.IsClosed() && t.conn.PgConn().TxStatus() == 'I' {
		return ErrTxLost
	}
	return nil
}

// begin sends BEGIN and the scope now, in one round trip, for the calls that
// cannot carry them along with a statement.
func (t *Tx) begin(ctx context.Context) error {
	top := t.top
	if top.open {
		return nil
	}
	p, sd := t.p, t.p.send
	bctx := p.traceBeginStart(ctx, t.conn, withBegin, t.opts)
	w := sd.enc.wire(t.conn, t.st, withBegin)
	err := sd.enc.begin(ctx, t.conn, t.st, w, t.opts)
	if err == nil {
		err = p.queueScope(ctx, t.conn, t.st, sd, w, t.sc)
	}
	if err != nil {
		p.traceBeginEnd(bctx, t.conn, withBegin, false, err)
		return err
	}
	mrr := w.send(ctx, t.conn.PgConn())
	if err := readResult(mrr); err != nil {
		p.traceBeginEnd(bctx, t.conn, withBegin, false, err)
		return err
	}
	p.traceBeginEnd(bctx, t.conn, withBegin, true, nil)
	top.open = true
	if err := p.scopeResults(ctx, t.conn, sd, t.sc, mrr); err != nil {
		return err
	}
	return mrr.Close()
}

// step says what the next statement carries: BEGIN and the scope if the
// transaction has not begun yet.
func (t *Tx) step() step {
	if t.top.open {
		return inScope
	}
	return withBegin
}

// began records that a BEGIN sent with a statement ran.
func (t *Tx) began(began bool) {
	if began {
		t.top.open = true
	}
}

// simple sends sql with the simple protocol and returns its command tag.
// simple runs a transaction-control statement (COMMIT, ROLLBACK, a
// savepoint's) as text, traced as pgx traces its own.
func (t *Tx) simple(ctx context.Context, sql string) (tag pgconn.CommandTag, err error) {
	tctx := t.p.traceStart(ctx, t.conn, sql, nil)
	defer func() { t.p.traceEnd(tctx, t.conn, tag, err) }()
	results, err := t.conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	if len(results) == 0 {
		return pgconn.CommandTag{}, nil
	}
	return results[len(results)-1].CommandTag, results[len(results)-1].Err
}

// Begin starts a pseudo nested transaction (a savepoint) in the same scope.
func (t *Tx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.usable(ctx); err != nil {
		return nil, err
	}
	if err := t.begin(ctx); err != nil {
		return nil, err
	}
	t.top.nested++
	n := t.top.nested
	if _, err := t.simple(ctx, "savepoint sp_"+strconv.Itoa(n)); err != nil {
		return nil, err
	}
	return &Tx{p: t.p, sc: t.sc, conn: t.conn, st: t.st, opts: t.opts, top: t.top, depth: n}, nil
}

// Commit commits the transaction (or releases the savepoint) and returns the
// connection to the pool. A failed transaction is rolled back by the server;
// Commit then returns pgx.ErrTxCommitRollback, as pgx does.
func (t *Tx) Commit(ctx context.Context) error {
	if t.depth > 0 {
		return t.endSavepoint(ctx, "release savepoint sp_")
	}
	return t.end(ctx, "commit")
}

// Rollback rolls the transaction (or savepoint) back and returns the
// connection to the pool. Like pgx, it returns pgx.ErrTxClosed after Commit
// or Rollback, so it is safe to defer.
func (t *Tx) Rollback(ctx context.Context) error {
	if t.depth > 0 {
		return t.endSavepoint(ctx, "rollback to savepoint sp_")
	}
	return t.end(ctx, "rollback")
}

func (t *Tx) endSavepoint(ctx context.Context, sql string) error {
	if t.closed || t.top.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	if !t.conn.IsClosed() && t.conn.PgConn().TxStatus() == 'I' {
		return ErrTxLost // the transaction, and the savepoint with it, ended outside Commit/Rollback
	}
	_, err := t.simple(ctx, sql+strconv.Itoa(t.depth))
	return err
}

func (t *Tx) end(ctx context.Context, sql string) error {
	if t.closed {
		return pgx.ErrTxClosed
	}
	t.closed = true
	var err error
	if t.conn.IsClosed() {
		// A statement failed so badly (cancelled mid-flight, the backend
		// terminated) that the connection is gone, and the transaction with
		// it: as with pgx, neither Commit nor Rollback can succeed.
		err = errors.New("pgtenant: " + sql + ": the connection is closed")
	}
	if t.open && !t.conn.IsClosed() {
		if t.conn.PgConn().TxStatus() == 'I' {
			err = ErrTxLost
		} else {
			var tag pgconn.CommandTag
			if t.pc == nil {
				// A transaction of an Acquired Conn: the session is the
				// Conn's, reset on release.
				t.st.unsure = false
			}
			if t.st.unsure {
				tag, err = t.endChecked(ctx, sql)
			} else {
				tag, err = t.simple(ctx, sql)
			}
			switch {
			case err != nil && t.conn.PgConn().TxStatus() != 'I':
				_ = t.conn.Close(context.WithoutCancel(ctx))
			case err == nil && sql == "commit" && tag.String() == "ROLLBACK":
				err = pgx.ErrTxCommitRollback
			}
		}
	}
	t.finish(ctx)
	return err
}

// endChecked ends a transaction in which a statement the backstop checks
// ran: COMMIT or ROLLBACK, then the session check, in one round trip.
func (t *Tx) endChecked(ctx context.Context, sql string) (tag pgconn.CommandTag, err error) {
	tctx := t.p.traceStart(ctx, t.conn, sql, nil)
	defer func() { t.p.traceEnd(tctx, t.conn, tag, err) }()
	sd := t.p.send
	w := sd.enc.wire(t.conn, t.st, inScope)
	w.params(sql, nil)
	sd.enc.session(w, t.st)
	if w.err != nil {
		return tag, w.err
	}
	results, err := w.send(ctx, t.conn.PgConn()).ReadAll()
	if len(results) > 0 {
		tag = results[0].CommandTag
		if results[0].Err != nil {
			return tag, results[0].Err
		}
	}
	return tag, t.p.verdict(t.st, err)
}

// finish deallocates the statements prepared by name in the transaction and
// returns the connection. A connection left inside a transaction, or with
// session state a statement may have left, is destroyed by the pool on
// release, never handed to the next tenant.
func (t *Tx) finish(ctx context.Context) {
	if len(t.st.named) > 0 {
		if !t.conn.IsClosed() {
			pl := t.conn.PgConn().StartPipeline(context.WithoutCancel(ctx))
			for name := range t.st.named {
				pl.SendDeallocate(name)
			}
			if err := pl.Sync(); err == nil {
				for range t.st.named {
					if _, err := pl.GetResults(); err != nil {
						t.st.dirty = true
						break
					}
				}
			}
			if err := pl.Close(); err != nil {
				t.st.dirty = true
			}
		}
		t.st.named = nil
	}
	if t.pc != nil {
		t.p.release(t.pc, t.st)
		t.pc = nil
	}
}

// CopyFrom copies rows into tableName, resolved in the tenant's schema, with
// the COPY protocol. PostgreSQL refuses COPY FROM into tables with row level
// security, so the rows are staged in a temporary table that is dropped at
// commit and moved with one INSERT ... SELECT that checks every row against
// the policy. This needs the TEMPORARY privilege on the database. In Citus
// mode the rows go as multi-row INSERTs of up to 1,000 rows instead (Citus
// would move staged rows with COPY on the worker, which RLS refuses).
func (t *Tx) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	if err := t.usable(ctx); err != nil {
		return 0, err
	}
	if err := t.begin(ctx); err != nil {
		return 0, err
	}
	return t.p.send.car.copy(ctx, t.conn, tableName, columnNames, rowSrc)
}

// SendBatch sends b inside the transaction.
func (t *Tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.usable(ctx); err != nil {
		return failedBatch(b, err)
	}
	items, err := t.p.batchItems(ctx, b, false)
	if err != nil {
		return failedBatch(b, err)
	}
	if err := t.begin(ctx); err != nil {
		return failedBatch(b, err)
	}
	return t.p.sendBatch(ctx, t.conn, t.st, t.p.send, t.sc, b, items, inScope, nil)
}

// LargeObjects returns the transaction's large object manager. Its calls run
// through the transaction's own methods, so in the tenant's scope.
func (t *Tx) LargeObjects() pgx.LargeObjects {
	var lo pgx.LargeObjects
	if largeObjectsLayout {
		*(*pgx.Tx)(unsafe.Pointer(&lo)) = t
	}
	return lo
}

// largeObjectsLayout reports whether pgx.LargeObjects is still a struct of
// one pgx.Tx field, which LargeObjects fills in; if a pgx release changes
// that, LargeObjects returns a zero value, whose methods fail.
var largeObjectsLayout = func() bool {
	typ := reflect.TypeFor[pgx.LargeObjects]()
	return typ.NumField() == 1 && typ.Field(0).Type == reflect.TypeFor[pgx.Tx]()
}()

// Prepare prepares a named statement in the transaction, parsed in the
// tenant's scope, as pgx.Tx does; Exec, Query and QueryRow then run it by
// name. It is deallocated when the transaction ends, so no other tenant can
// run it.
func (t *Tx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.usable(ctx); err != nil {
		return nil, err
	}
	if _, err := t.p.check(sql); err != nil {
		return nil, err
	}
	if name == "" {
		name = sql
	}
	if strings.HasPrefix(name, "tenancy_") {
		return nil, fmt.Errorf("pgtenant: Prepare: statement names starting with \"tenancy_\" are the pool's own; choose another name than %q", name)
	}
	if sd, ok := t.st.named[name]; ok && sd.SQL == sql {
		return sd, nil
	}
	if err := t.begin(ctx); err != nil {
		return nil, err
	}
	sd, err := t.conn.PgConn().Prepare(ctx, name, sql, nil)
	if err != nil {
		return nil, err
	}
	if t.st.named == nil {
		t.st.named = make(map[string]*pgconn.StatementDescription)
	}
	t.st.named[name] = sd
	return sd, nil
}

// stmt prepares a call: checks t, applies query rewriters, classifies sql,
// picks the call's sender.
func (t *Tx) stmt(ctx context.Context, sql string, args []any) (string, []any, *sender, *class, error) {
	if err := t.usable(ctx); err != nil {
		return "", nil, nil, nil, err
	}
	sql, args, err := splitCall(ctx, sql, args)
	if err != nil {
		return "", nil, nil, nil, err
	}
	cls, err := t.p.check(sql)
	if err != nil {
		return "", nil, nil, nil, err
	}
	return sql, args, t.p.senderFor(args), cls, nil
}

// Exec runs sql in the transaction.
func (t *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	sql, args, sd, cls, err := t.stmt(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ct, began, err := t.p.execStmt(ctx, t.conn, t.st, sd, t.sc, cls, sql, args, t.step(), t.opts)
	t.began(began)
	return ct, err
}

// Query runs sql in the transaction.
func (t *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	sql, args, sd, cls, err := t.stmt(ctx, sql, args)
	if err != nil {
		return errRows{err}, err
	}
	rows, began, err := t.p.queryStmt(ctx, t.conn, t.st, sd, t.sc, cls, sql, args, t.step(), t.opts, nil)
	t.began(began)
	if err != nil {
		return errRows{err}, err
	}
	return rows, nil
}

// QueryRow runs sql in the transaction; errors are deferred to Scan. A
// failed statement aborts the transaction, so nothing is retried.
func (t *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	sql, args, sd, cls, err := t.stmt(ctx, sql, args)
	if err != nil {
		return &row{rows: errRows{err}}
	}
	r, began := t.p.rowStmt(ctx, t.conn, t.st, sd, t.sc, cls, sql, args, t.step(), t.opts)
	t.began(began)
	return r
}

// Conn returns the transaction's underlying connection. A transaction that
// has not run a statement yet begins first, so that whatever is sent on the
// connection directly (CopyTo, say) runs inside the tenant's scope; if that
// fails, the connection is closed, so that nothing sent on it runs outside
// the scope. Statements sent on it directly are neither classified nor
// checked for session state: see the package documentation.
func (t *Tx) Conn() *pgx.Conn {
	if !t.closed && !t.top.open {
		if err := t.begin(context.Background()); err != nil {
			_ = t.conn.Close(context.Background())
		}
	}
	return t.conn
}

// Tenant returns the tenant the transaction belongs to.
func (t *Tx) Tenant() tenant.Tenant { return t.sc.tenant }
