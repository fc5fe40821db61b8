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
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return failedBatch(b, err)
	}
	st := p.state(c.Conn())
	finish := func(err error) error {
		p.release(c, st)
		return err
	}
	if p.prepared {
		return p.sendBatch(ctx, c.Conn(), st, sc, b, withScope, finish)
	}
	mapped := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+1)}
	p.queueScope(mapped, sc)
	classes := make([]*class, len(b.QueuedQueries))
	for i, q := range b.QueuedQueries {
		sql, args, cls, err := p.batchQuery(ctx, q)
		if err != nil {
			return failedBatch(b, finish(wrapErr(i, err)))
		}
		classes[i] = cls
		mapped.QueuedQueries = append(mapped.QueuedQueries, &pgx.QueuedQuery{SQL: sql, Arguments: args, Fn: q.Fn})
	}
	br := c.Conn().SendBatch(ctx, mapped)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return failedBatch(b, finish(scopeFailed(ctx, c.Conn(), sc, err)))
	}
	return &textBatch{BatchResults: br, st: st, classes: classes, finish: finish}
}

// batchQuery applies q's query rewriter and classifies its SQL.
func (p *Pool) batchQuery(ctx context.Context, q *pgx.QueuedQuery) (string, []any, *class, error) {
	sql, args, opts, err := splitArgs(ctx, q.SQL, q.Arguments)
	if err != nil {
		return "", nil, nil, err
	}
	if len(opts) > 0 {
		return "", nil, nil, errors.New("pgtenant: query options other than pgx.QueryRewriter are not supported in a batch")
	}
	cls, err := p.check(sql)
	return sql, args, cls, err
}

// sendBatch sends b's queries as prepared statements on c after what s says
// (withScope on the pool's path, inScope in a transaction or session),
// preparing the ones new on c together in one round trip first.
func (p *Pool) sendBatch(ctx context.Context, c *pgx.Conn, st *connState, sc scope, b *pgx.Batch, s step, finish func(error) error) pgx.BatchResults {
	if p.bt != nil {
		ctx = p.bt.TraceBatchStart(ctx, c, pgx.TraceBatchStartData{Batch: b})
	}
	n := len(b.QueuedQueries)
	classes := make([]*class, n)
	keys := make([]stmtKey, n)
	args := make([][]any, n)
	fail := func(err error) pgx.BatchResults {
		if p.bt != nil {
			p.bt.TraceBatchEnd(ctx, c, pgx.TraceBatchEndData{Err: err})
		}
		if finish != nil {
			err = finish(err)
		}
		return failedBatch(b, err)
	}
	var cold []stmtKey
	for i, q := range b.QueuedQueries {
		sql, a, cls, err := p.batchQuery(ctx, q)
		if err != nil {
			return fail(wrapErr(i, err))
		}
		classes[i], keys[i], args[i] = cls, stmtKey{schema: sc.key, sql: sql}, a
		if s == inScope && st.named[sql] != nil {
			continue
		}
		if st.lookup(keys[i]) == nil && !containsKey(cold, keys[i]) {
			cold = append(cold, keys[i])
		}
	}
	if len(cold) > 0 {
		if _, _, err := p.prepare(ctx, c, st, sc, cold, s, pgx.TxOptions{}); err != nil {
			return fail(err)
		}
	}
	if s != inScope {
		if err := p.ensureScopeSD(ctx, c, st); err != nil {
			return fail(err)
		}
	}
	var pb pgconn.Batch
	if s != inScope {
		pb.ExecStatement(st.scopeSD, p.scopeValues(sc), nil, nil)
	}
	for i, k := range keys {
		sd := st.named[k.sql]
		if s != inScope || sd == nil {
			sd = st.lookup(k)
		}
		if sd == nil {
			return fail(wrapErr(i, errors.New("the batch has more distinct statements than Config.StatementCacheCapacity")))
		}
		if err := st.eqb.Build(c.TypeMap(), sd, args[i]); err != nil {
			return fail(wrapErr(i, err))
		}
		pb.ExecStatement(sd, st.eqb.ParamValues, st.eqb.ParamFormats, st.eqb.ResultFormats)
	}
	mrr := c.PgConn().ExecBatch(ctx, &pb)
	if s != inScope {
		if err := readResult(mrr); err != nil {
			return fail(scopeFailed(ctx, c, sc, err))
		}
	}
	return &stmtBatch{ctx: ctx, b: b, mrr: mrr, conn: c, st: st, classes: classes, keys: keys, args: args, bt: p.bt, finish: finish}
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
