package pgtenant

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The one statement path of Pool, Tx and Conn: run writes [BEGIN], [the
// scope statement and what the carrier adds] and the statement, [the
// backstop's guard, COMMIT and session check], in one write, through the
// call's sender (sender.go), and reads up to the statement's result.
// execStmt, queryStmt and rowStmt wrap run with tracing, the session-state
// backstop and stale-statement handling; retryStale sends once more a
// statement that failed stale on the pool's path.

// step says what travels before a statement in its round trip.
type step uint8

const (
	// inScope: the transaction or session already carries the scope.
	inScope step = iota
	// withScope: the scope statement, in the statement's implicit transaction.
	withScope
	// withBegin: BEGIN, then the scope statement; the transaction starts here.
	withBegin
)

// run sends sql with args on c through sd, after what s says, in one write,
// and returns the reader positioned at the statement's result. A statement
// new on c for the tenant's schema is prepared first (prepared modes), in
// one more round trip that carries BEGIN and the scope too where s asks for
// them. began reports whether a BEGIN sent here ran.
func (p *Pool) run(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, cls *class, sql string, args []any, s step, opts pgx.TxOptions) (mrr *pgconn.MultiResultReader, began bool, err error) {
	key := stmtKey{schema: sc.key, sql: sql}
	d, began, err := sd.enc.ready(ctx, c, st, sd, sc, key, s, opts)
	if err != nil {
		return nil, began, err
	}
	if began {
		s = inScope // BEGIN and the scope ran with the prepare
	}
	w := sd.enc.wire(c, st, s)
	if s == withBegin || sd.block(s, cls) {
		if err := sd.enc.begin(ctx, c, st, w, opts); err != nil {
			return nil, began, err
		}
	}
	if s != inScope {
		if err := p.queueScope(ctx, c, st, sd, w, sc); err != nil {
			return nil, began, err
		}
	}
	if err := sd.enc.stmt(c, st, w, d, key, args, s); err != nil {
		return nil, began, err
	}
	p.queueAfter(w, st, sd, sc, cls, s)
	var sent bool
	mrr, sent, err = p.sendStmt(ctx, c, sd, sc, cls, w, s)
	// A BEGIN that ran with the prepare, or with the statement.
	return mrr, began || sent, err
}

// queueAfter queues what follows a statement of class cls sent after s: the
// guard if the backstop checks it, and, where the statement runs in a block
// of its own, COMMIT and then the session check.
func (p *Pool) queueAfter(w *wire, st *connState, sd *sender, sc scope, cls *class, s step) {
	if cls.check {
		sd.enc.guard(w, st, sc)
	}
	if sd.block(s, cls) {
		w.params("commit", nil)
		if cls.check {
			sd.enc.session(w, st)
		}
	}
}

// sendStmt writes w — [BEGIN], [scope, [the carrier's]], the statement,
// [...] — and reads up to the statement's result. began reports whether a
// BEGIN in w ran.
func (p *Pool) sendStmt(ctx context.Context, c *pgx.Conn, sd *sender, sc scope, cls *class, w *wire, s step) (mrr *pgconn.MultiResultReader, began bool, err error) {
	if w.err != nil {
		return nil, false, w.err
	}
	mrr = w.send(ctx, c.PgConn())
	if s == withBegin || sd.block(s, cls) {
		if err := readResult(mrr); err != nil {
			return nil, false, err
		}
		began = true
	}
	if s != inScope {
		if err := p.scopeResults(ctx, c, sd, sc, mrr); err != nil {
			return nil, began, err
		}
	}
	if mrr, err = w.next(ctx, c.PgConn(), mrr); err != nil {
		return nil, began, err
	}
	if !mrr.NextResult() {
		return nil, began, closeErr(mrr)
	}
	return mrr, began, nil
}

// scopeResults reads the results of the scope statement and of what the
// carrier queued after it; a failure is the scope's.
func (p *Pool) scopeResults(ctx context.Context, c *pgx.Conn, sd *sender, sc scope, mrr *pgconn.MultiResultReader) error {
	for range 1 + sd.car.results() {
		if err := readResult(mrr); err != nil {
			return scopeFailed(ctx, c, sc, err)
		}
	}
	return nil
}

// execStmt runs one statement on c after what s says (see run), traced, and
// returns its command tag, having checked the tag for session state and
// forgotten a stale statement. began reports whether a BEGIN sent with it
// ran. Pool, Tx and Conn share it.
func (p *Pool) execStmt(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, cls *class, sql string, args []any, s step, opts pgx.TxOptions) (ct pgconn.CommandTag, began bool, err error) {
	bctx := p.traceBeginStart(ctx, c, s, opts)
	ctx = p.traceStart(ctx, c, sql, args)
	var mrr *pgconn.MultiResultReader
	mrr, began, err = p.run(ctx, c, st, sd, sc, cls, sql, args, s, opts)
	p.traceBeginEnd(bctx, c, s, began, err)
	if err == nil {
		ct, err = mrr.ResultReader().Close()
		if closeErr := mrr.Close(); err == nil {
			err = closeErr
		}
		err = p.verdict(st, err)
		st.observe(cls, ct)
	}
	p.traceEnd(ctx, c, ct, err)
	st.settle(stmtKey{schema: sc.key, sql: sql}, err)
	p.failed(ctx, c, st, sd, cls, s, err)
	return ct, began, err
}

// queryStmt sends one statement like execStmt and returns its rows, which
// end the trace and call finish (may be nil) when closed.
func (p *Pool) queryStmt(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, cls *class, sql string, args []any, s step, opts pgx.TxOptions, finish func(error) error) (*stmtRows, bool, error) {
	key := stmtKey{schema: sc.key, sql: sql}
	bctx := p.traceBeginStart(ctx, c, s, opts)
	ctx = p.traceStart(ctx, c, sql, args)
	mrr, began, err := p.run(ctx, c, st, sd, sc, cls, sql, args, s, opts)
	p.traceBeginEnd(bctx, c, s, began, err)
	if err != nil {
		st.settle(key, err)
		p.traceEnd(ctx, c, pgconn.CommandTag{}, err)
		p.failed(ctx, c, st, sd, cls, s, err)
		return nil, began, err
	}
	if sd.block(s, cls) {
		// The rows end a block of the statement's own: a failure seen
		// when they close is handled there.
		inner := finish
		finish = func(err error) error {
			p.failed(ctx, c, st, sd, cls, s, err)
			if inner != nil {
				return inner(err)
			}
			return err
		}
	}
	return &stmtRows{Rows: pgx.RowsFromResultReader(c.TypeMap(), mrr.ResultReader()), mrr: mrr,
		st: st, cls: cls, key: key, conn: c, finish: finish, p: p, tctx: ctx}, began, nil
}

// rowStmt sends one statement like execStmt for QueryRow: the row scans
// straight from the result and ends the trace.
func (p *Pool) rowStmt(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, cls *class, sql string, args []any, s step, opts pgx.TxOptions) (*stmtRow, bool) {
	key := stmtKey{schema: sc.key, sql: sql}
	bctx := p.traceBeginStart(ctx, c, s, opts)
	ctx = p.traceStart(ctx, c, sql, args)
	r := &stmtRow{conn: c, st: st, cls: cls, key: key, p: p, ctx: ctx}
	var began bool
	r.mrr, began, r.err = p.run(ctx, c, st, sd, sc, cls, sql, args, s, opts)
	p.traceBeginEnd(bctx, c, s, began, r.err)
	if r.err != nil {
		st.settle(key, r.err)
		p.traceEnd(ctx, c, pgconn.CommandTag{}, r.err)
		p.failed(ctx, c, st, sd, cls, s, r.err)
	}
	return r, began
}

// retryStale runs send, and once more if it failed because a prepared
// statement went stale (see isStaleStatement): its tables changed under it
// and it failed before executing, so nothing reached the caller; prepared
// afresh, it is sent once more. Only the pool's path retries: in a
// transaction the failure aborted it.
func retryStale[T any](send func() (T, error)) (T, error) {
	v, err := send()
	if isStaleStatement(err) {
		v, err = send()
	}
	return v, err
}

// block reports whether a statement sent through sd after s runs in an
// explicit block of its own, BEGIN to COMMIT: on the pool's path (withScope)
// where the carrier asks for it (Citus mode), and for a statement the
// backstop checks, whose session check must follow the COMMIT.
func (sd *sender) block(s step, cls *class) bool {
	return s == withScope && (cls.check || sd.car.ownBlock())
}

// failed handles a statement of class cls, sent after s, that returned err:
// a block of its own that failed is rolled back, and a checked statement
// that failed on the pool's path takes its connection with it — its session
// check did not run, and a failed transaction does not undo everything
// (a session advisory lock, say).
func (p *Pool) failed(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, cls *class, s step, err error) {
	if err == nil {
		return
	}
	if cls.check && s == withScope {
		st.dirty = true
	}
	if sd.block(s, cls) && !st.dirty {
		abortBlock(ctx, c)
	}
}

// abortBlock rolls back a transaction block left open on c by a statement
// that failed in it (the blocks of Citus mode and of checked statements),
// or closes c if that fails, so that the next statement on c starts clean.
func abortBlock(ctx context.Context, c *pgx.Conn) {
	if c.IsClosed() || c.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resetTimeout)
	defer cancel()
	if _, err := c.PgConn().Exec(ctx, "rollback").ReadAll(); err != nil || c.PgConn().TxStatus() != 'I' {
		_ = c.Close(ctx)
	}
}

// readResult reads the next result of mrr. If it failed, the server skipped
// the rest of the batch, and mrr is closed.
func readResult(mrr *pgconn.MultiResultReader) error {
	var err error
	if mrr.NextResult() {
		if _, err = mrr.ResultReader().Close(); err == nil {
			return nil
		}
	}
	if closeErr := mrr.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = errors.New("pgtenant: the server sent no result")
	}
	return err
}

func closeErr(mrr *pgconn.MultiResultReader) error {
	if err := mrr.Close(); err != nil {
		return err
	}
	return errors.New("pgtenant: the server sent fewer results than statements")
}
