package pgtenant

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SendBatch sends every query of b in the tenant's scope, the scope
// statement first, all in one round trip and one implicit transaction
// (queries new on the connection are prepared first, together, in one more).
// The connection returns to the pool when the results are closed. A batch
// that begins a transaction (pgx.Batch.BeginTx) is not supported here: use
// [Pool.BeginTx] and send the batch on the transaction.
func (p *Pool) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	sc, err := p.require(ctx)
	if err != nil {
		return failedBatch(b, err)
	}
	// Rewritten and classified before a connection is taken: a refused
	// query costs no I/O.
	items, err := p.batchItems(ctx, b, false)
	if err != nil {
		return failedBatch(b, err)
	}
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return failedBatch(b, err)
	}
	st := p.state(c.Conn())
	finish := func(err error) error {
		p.release(c, st)
		return err
	}
	if p.simple && items.class().check {
		// The simple protocol, with a query the backstop checks: the
		// batch runs in a transaction of its own, guarded at its end.
		t := &Tx{p: p, sc: sc, pc: c, conn: c.Conn(), st: st}
		t.top = t
		if err := t.begin(ctx); err != nil {
			p.release(c, st)
			return failedBatch(b, err)
		}
		return &txBatch{BatchResults: t.SendBatch(ctx, b), ctx: ctx, tx: t}
	}
	if p.simple {
		return p.sendText(ctx, c.Conn(), st, sc, b, items, withScope, finish)
	}
	return p.sendBatch(ctx, c.Conn(), st, sc, b, items, withScope, finish)
}

// txBatch are the results of a batch run in a transaction of its own, which
// Close ends.
type txBatch struct {
	pgx.BatchResults
	ctx    context.Context
	tx     *Tx
	err    error
	closed bool
}

func (br *txBatch) Close() error {
	if br.closed {
		return br.err
	}
	br.closed = true
	br.err = br.BatchResults.Close()
	if br.err != nil {
		_ = br.tx.Rollback(context.WithoutCancel(br.ctx))
	} else {
		br.err = br.tx.Commit(br.ctx)
	}
	return br.err
}

// batchItems are a batch's queries after their query rewriters, with their
// classes.
type batchItems struct {
	sql     []string
	args    [][]any
	classes []*class
}

// batchItems rewrites and classifies b's queries; with session set (an
// Acquired Conn) nothing is refused.
func (p *Pool) batchItems(ctx context.Context, b *pgx.Batch, session bool) (batchItems, error) {
	n := len(b.QueuedQueries)
	items := batchItems{sql: make([]string, n), args: make([][]any, n), classes: make([]*class, n)}
	for i, q := range b.QueuedQueries {
		sql, args, opts, err := splitArgs(ctx, q.SQL, q.Arguments)
		if err == nil && len(opts) > 0 {
			err = errors.New("pgtenant: query options other than pgx.QueryRewriter are not supported in a batch")
		}
		cls := sessionClass
		if err == nil && !session {
			cls, err = p.check(sql)
		}
		if err != nil {
			return items, wrapErr(i, err)
		}
		items.sql[i], items.args[i], items.classes[i] = sql, args, cls
	}
	return items, nil
}

// sendText sends the items as text through pgx, for pools on the simple
// protocol, after the scope statement on the pool's path (s withScope).
func (p *Pool) sendText(ctx context.Context, c *pgx.Conn, st *connState, sc scope, b *pgx.Batch, items batchItems, s step, finish func(error) error) pgx.BatchResults {
	mapped := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(items.sql)+1)}
	if s == withScope {
		p.queueScope(mapped, sc)
	}
	for i, q := range b.QueuedQueries {
		mapped.QueuedQueries = append(mapped.QueuedQueries, &pgx.QueuedQuery{SQL: items.sql[i], Arguments: items.args[i], Fn: q.Fn})
	}
	if finish == nil {
		finish = func(err error) error { return err }
	}
	if items.class().check && s == inScope {
		// In a transaction: the guard runs once the batch is read.
		inner := finish
		finish = func(err error) error {
			if err == nil {
				err = p.guardPgx(ctx, c, st, sc)
			}
			return inner(err)
		}
	}
	br := c.SendBatch(ctx, mapped)
	if s == withScope {
		if err := p.readScope(ctx, c, sc, br); err != nil {
			_ = br.Close()
			return failedBatch(b, finish(err))
		}
	}
	return &textBatch{BatchResults: br, st: st, classes: items.classes, finish: finish}
}

// sendBatch sends b's queries on c after what s says (withScope on the
// pool's path, inScope in a transaction or session): as prepared
// statements, preparing the ones new on c together in one round trip first,
// or in QueryExecModeExec as parameterised text.
func (p *Pool) sendBatch(ctx context.Context, c *pgx.Conn, st *connState, sc scope, b *pgx.Batch, items batchItems, s step, finish func(error) error) pgx.BatchResults {
	if p.bt != nil {
		ctx = p.bt.TraceBatchStart(ctx, c, pgx.TraceBatchStartData{Batch: b})
	}
	fail := func(err error) pgx.BatchResults {
		if p.bt != nil {
			p.bt.TraceBatchEnd(ctx, c, pgx.TraceBatchEndData{Err: err})
		}
		if finish != nil {
			err = finish(err)
		}
		return failedBatch(b, err)
	}
	keys := make([]stmtKey, len(items.sql))
	var cold []stmtKey
	for i, sql := range items.sql {
		keys[i] = stmtKey{schema: sc.key, sql: sql}
		if s == inScope && st.named[sql] != nil {
			continue
		}
		if st.lookup(keys[i]) == nil && !containsKey(cold, keys[i]) {
			cold = append(cold, keys[i])
		}
	}
	if len(cold) > 0 && p.prepared {
		if _, _, err := p.prepare(ctx, c, st, sc, cold, s, pgx.TxOptions{}); err != nil {
			return fail(err)
		}
	}
	bc := items.class()
	pb := st.batch(c.PgConn())
	if p.block(s, bc) {
		// Citus mode, or a query the backstop checks: the batch runs in a
		// block of its own.
		pb.ExecParams("begin", nil, nil, nil, nil)
	}
	switch {
	case s == inScope:
	case p.prepared:
		if err := p.ensureScopeSD(ctx, c, st); err != nil {
			return fail(err)
		}
		p.queueScopeStmt(pb, st.scopeSD, sc)
	default:
		p.queueScopeStmt(pb, nil, sc)
	}
	for i, k := range keys {
		if !p.prepared {
			// QueryExecModeExec: parameterised text, encoded as pgx does.
			if err := st.eqb.Build(c.TypeMap(), nil, items.args[i]); err != nil {
				return fail(wrapErr(i, err))
			}
			pb.ExecParams(k.sql, st.eqb.ParamValues, nil, st.eqb.ParamFormats, st.eqb.ResultFormats)
			if items.classes[i].check {
				p.queueGuard(pb, st, sc)
			}
			continue
		}
		sd := st.named[k.sql]
		if s != inScope || sd == nil {
			sd = st.lookup(k)
		}
		if sd == nil {
			return fail(wrapErr(i, errors.New("the batch has more distinct statements than Config.StatementCacheCapacity")))
		}
		if err := st.eqb.Build(c.TypeMap(), sd, items.args[i]); err != nil {
			return fail(wrapErr(i, err))
		}
		pb.ExecStatement(sd, st.eqb.ParamValues, st.eqb.ParamFormats, st.eqb.ResultFormats)
		if items.classes[i].check {
			p.queueGuard(pb, st, sc)
		}
	}
	if p.block(s, bc) {
		pb.ExecParams("commit", nil, nil, nil, nil)
		if bc.check {
			p.queueSession(pb, st)
		}
	}
	mrr := c.PgConn().ExecBatch(ctx, pb)
	if p.block(s, bc) {
		if err := readResult(mrr); err != nil {
			return fail(err)
		}
	}
	if s != inScope {
		if err := p.scopeResults(ctx, c, sc, mrr); err != nil {
			return fail(err)
		}
	}
	if bc.check && s == withScope {
		// As for one statement (Pool.failed): a failed batch with a
		// checked query takes its connection with it.
		inner := finish
		finish = func(err error) error {
			if err != nil {
				st.dirty = true
			}
			if inner != nil {
				return inner(err)
			}
			return err
		}
	}
	return &stmtBatch{ctx: ctx, b: b, mrr: mrr, conn: c, st: st, classes: items.classes, keys: keys, args: items.args, bt: p.bt, finish: finish, p: p}
}

// class is the class of the batch as a whole: checked if any query is.
func (items batchItems) class() *class {
	for _, c := range items.classes {
		if c.check {
			return &class{check: true}
		}
	}
	return &class{}
}

func containsKey(keys []stmtKey, k stmtKey) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// textBatch are the results of a batch sent as text through pgx (connections
// that prepare nothing). The command tags of Exec results are checked for
// session state; the connection returns to the pool once closed.
type textBatch struct {
	pgx.BatchResults
	st      *connState
	classes []*class
	idx     int
	finish  func(error) error
	err     error
	closed  bool
}

func (br *textBatch) Exec() (pgconn.CommandTag, error) {
	ct, err := br.BatchResults.Exec()
	if br.idx < len(br.classes) {
		br.st.observe(br.classes[br.idx], ct)
	}
	br.idx++
	return ct, err
}

func (br *textBatch) Query() (pgx.Rows, error) {
	rows, err := br.BatchResults.Query()
	if br.idx < len(br.classes) && err == nil {
		rows = &stmtRows{Rows: rows, st: br.st, cls: br.classes[br.idx], conn: rows.Conn()}
	}
	br.idx++
	return rows, err
}

func (br *textBatch) QueryRow() pgx.Row {
	rows, _ := br.Query()
	return &row{rows: rows}
}

func (br *textBatch) Close() error {
	if br.closed {
		return br.err
	}
	br.closed = true
	br.err = br.finish(br.BatchResults.Close())
	return br.err
}
