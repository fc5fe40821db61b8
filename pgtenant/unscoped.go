package pgtenant

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// scopedAcquire marks the context of a tenant's acquire (Pool.acquire) for
// the PrepareConn hook of countUnscoped.
type scopedAcquire struct{}

// countUnscoped installs the hooks that count the connections
// [Pool.Unscoped] (and the pool's own checks) take from the pgx pool
// against the gate's total: they do not wait for the gate, but while they
// are out the gate admits fewer tenants, so that no admitted tenant waits
// in pgxpool's own queue (first come, first served) behind them. The
// acquire is seen by PrepareConn, the release by a pgxpool.ReleaseTracer
// wrapped around the ConnConfig's tracer (AfterRelease would make every
// release asynchronous).
func (p *Pool) countUnscoped(pc *pgxpool.Config) {
	// A user's deprecated BeforeAcquire still runs, as pgxpool would run it.
	userPrepare := pc.PrepareConn
	userBefore := pc.BeforeAcquire //lint:ignore SA1019 honoured as pgxpool honours it
	pc.BeforeAcquire = nil         //lint:ignore SA1019 replaced by the PrepareConn below
	pc.PrepareConn = func(ctx context.Context, c *pgx.Conn) (bool, error) {
		switch {
		case userPrepare != nil:
			if ok, err := userPrepare(ctx, c); !ok || err != nil {
				return ok, err
			}
		case userBefore != nil:
			if !userBefore(ctx, c) {
				return false, nil
			}
		}
		if ctx.Value(scopedAcquire{}) == nil {
			st := p.state(c)
			st.unscoped = true
			p.gate.unscoped(1)
		}
		return true, nil
	}
	pc.ConnConfig.Tracer = &releaseTracer{poolTracer: newPoolTracer(pc.ConnConfig.Tracer), p: p}
}

// releaseTracer sees every release of the pgx pool (countUnscoped) and
// passes every trace on to the tracer it wraps.
type releaseTracer struct {
	poolTracer
	p *Pool
}

func (r *releaseTracer) TraceRelease(pool *pgxpool.Pool, data pgxpool.TraceReleaseData) {
	if st, ok := r.p.conns.Load(data.Conn); ok {
		r.p.unscopedDone(st.(*connState))
	}
	if r.release != nil {
		r.release.TraceRelease(pool, data)
	}
}

// poolTracer passes each trace to the tracer it was made from, where that
// tracer has the hook.
type poolTracer struct {
	query   pgx.QueryTracer
	batch   pgx.BatchTracer
	copy    pgx.CopyFromTracer
	prepare pgx.PrepareTracer
	connect pgx.ConnectTracer
	acquire pgxpool.AcquireTracer
	release pgxpool.ReleaseTracer
}

func newPoolTracer(t pgx.QueryTracer) poolTracer {
	pt := poolTracer{query: t}
	pt.batch, _ = t.(pgx.BatchTracer)
	pt.copy, _ = t.(pgx.CopyFromTracer)
	pt.prepare, _ = t.(pgx.PrepareTracer)
	pt.connect, _ = t.(pgx.ConnectTracer)
	pt.acquire, _ = t.(pgxpool.AcquireTracer)
	pt.release, _ = t.(pgxpool.ReleaseTracer)
	return pt
}

func (t *poolTracer) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if t.query != nil {
		return t.query.TraceQueryStart(ctx, c, d)
	}
	return ctx
}

func (t *poolTracer) TraceQueryEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	if t.query != nil {
		t.query.TraceQueryEnd(ctx, c, d)
	}
}

func (t *poolTracer) TraceBatchStart(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if t.batch != nil {
		return t.batch.TraceBatchStart(ctx, c, d)
	}
	return ctx
}

func (t *poolTracer) TraceBatchQuery(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	if t.batch != nil {
		t.batch.TraceBatchQuery(ctx, c, d)
	}
}

func (t *poolTracer) TraceBatchEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchEndData) {
	if t.batch != nil {
		t.batch.TraceBatchEnd(ctx, c, d)
	}
}

func (t *poolTracer) TraceCopyFromStart(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	if t.copy != nil {
		return t.copy.TraceCopyFromStart(ctx, c, d)
	}
	return ctx
}

func (t *poolTracer) TraceCopyFromEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromEndData) {
	if t.copy != nil {
		t.copy.TraceCopyFromEnd(ctx, c, d)
	}
}

func (t *poolTracer) TracePrepareStart(ctx context.Context, c *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	if t.prepare != nil {
		return t.prepare.TracePrepareStart(ctx, c, d)
	}
	return ctx
}

func (t *poolTracer) TracePrepareEnd(ctx context.Context, c *pgx.Conn, d pgx.TracePrepareEndData) {
	if t.prepare != nil {
		t.prepare.TracePrepareEnd(ctx, c, d)
	}
}

func (t *poolTracer) TraceConnectStart(ctx context.Context, d pgx.TraceConnectStartData) context.Context {
	if t.connect != nil {
		return t.connect.TraceConnectStart(ctx, d)
	}
	return ctx
}

func (t *poolTracer) TraceConnectEnd(ctx context.Context, d pgx.TraceConnectEndData) {
	if t.connect != nil {
		t.connect.TraceConnectEnd(ctx, d)
	}
}

func (t *poolTracer) TraceAcquireStart(ctx context.Context, pool *pgxpool.Pool, d pgxpool.TraceAcquireStartData) context.Context {
	if t.acquire != nil {
		return t.acquire.TraceAcquireStart(ctx, pool, d)
	}
	return ctx
}

func (t *poolTracer) TraceAcquireEnd(ctx context.Context, pool *pgxpool.Pool, d pgxpool.TraceAcquireEndData) {
	if t.acquire != nil {
		t.acquire.TraceAcquireEnd(ctx, pool, d)
	}
}

// unscopedDone settles an unscoped connection's count once it is back.
func (p *Pool) unscopedDone(st *connState) {
	if st.unscoped {
		st.unscoped = false
		p.gate.unscoped(-1)
	}
}

// unscoped counts n connections taken (or, negative, returned) outside the
// tenants' budgets.
func (g *gate) unscoped(n int32) {
	g.mu.Lock()
	g.inUse += n
	if n < 0 {
		g.dispatch()
	}
	g.mu.Unlock()
}
