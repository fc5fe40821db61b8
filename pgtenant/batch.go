package pgtenant

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
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
	c, st, err := p.acquire(ctx, sc)
	if err != nil {
		return failedBatch(b, err)
	}
	return p.sendBatch(ctx, c.Conn(), st, p.send, sc, b, items, withScope, func(err error) error {
		p.release(c, st)
		return err
	})
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

// sendBatch sends b's queries on c after what s says (withScope on the
// pool's path, inScope in a transaction or session): as prepared
// statements, preparing the ones new on c together in one round trip first,
// or in QueryExecModeExec as parameterised text.
func (p *Pool) sendBatch(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, b *pgx.Batch, items batchItems, s step, finish func(error) error) pgx.BatchResults {
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
	if len(cold) > 0 {
		if err := sd.enc.readyBatch(ctx, c, st, sd, sc, cold, s); err != nil {
			return fail(err)
		}
	}
	bc := items.class()
	block := sd.block(s, bc)
	w := sd.enc.wire(c, st, s)
	if block {
		// The carrier's block (Citus mode), or a query the backstop
		// checks: the batch runs in a block of its own.
		w.params("begin", nil)
	}
	if s != inScope {
		if err := p.queueScope(ctx, c, st, sd, w, sc); err != nil {
			return fail(err)
		}
	}
	guardN := 0
	for i, k := range keys {
		if err := sd.enc.stmt(c, st, w, nil, k, items.args[i], s); err != nil {
			return fail(wrapErr(i, err))
		}
		if items.classes[i].check {
			guardN = sd.enc.guard(w, st, sc)
		}
	}
	if block {
		w.params("commit", nil)
		if bc.check {
			sd.enc.session(w, st)
		}
	}
	if w.err != nil {
		return fail(w.err)
	}
	mrr := w.send(ctx, c.PgConn())
	if block {
		if err := readResult(mrr); err != nil {
			return fail(err)
		}
	}
	if s != inScope {
		if err := p.scopeResults(ctx, c, sd, sc, mrr); err != nil {
			return fail(err)
		}
	}
	var err error
	if mrr, err = w.next(ctx, c.PgConn(), mrr); err != nil {
		return fail(err)
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
	return &stmtBatch{ctx: ctx, b: b, mrr: mrr, conn: c, st: st, classes: items.classes, keys: keys, args: items.args, bt: p.bt, finish: finish, p: p, guardN: guardN}
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
