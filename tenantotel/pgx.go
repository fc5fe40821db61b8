package tenantotel

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// Tracer returns a pgx tracer for a pool's ConnConfig.Tracer: a
// pgx.QueryTracer that is also a pgx.BatchTracer and a pgx.PrepareTracer.
//
// With inner nil it starts a client span per statement (named by the
// statement's first keyword: "SELECT", "INSERT", ...; "batch" and
// "prepare" for those), with db.system.name "postgresql", db.operation.name,
// db.query.text (unless Config.OmitStatement) and the tenant's tenant.id and
// tenant.slug, and ends it with the error's status. With inner set
// (otelpgx's tracer, or any other), inner makes the spans and the tracer
// adds the tenant attributes to the span inner put in the context; inner's
// batch and prepare hooks are called when it has them. Either way the
// statement metrics are recorded.
func (t *Telemetry) Tracer(inner pgx.QueryTracer) pgx.QueryTracer {
	x := &pgxTracer{t: t, inner: inner}
	x.batch, _ = inner.(pgx.BatchTracer)
	x.prepare, _ = inner.(pgx.PrepareTracer)
	return x
}

type pgxTracer struct {
	t       *Telemetry
	inner   pgx.QueryTracer
	batch   pgx.BatchTracer
	prepare pgx.PrepareTracer
}

var (
	_ pgx.QueryTracer   = (*pgxTracer)(nil)
	_ pgx.BatchTracer   = (*pgxTracer)(nil)
	_ pgx.PrepareTracer = (*pgxTracer)(nil)
)

type (
	queryKey   struct{}
	batchKey   struct{}
	prepareKey struct{}
)

// call is one traced statement, batch or prepare.
type call struct {
	start time.Time
	set   *label
	span  trace.Span
	own   bool // the span is ours to end
}

var dbSystem = attribute.String("db.system.name", "postgresql")

// begin starts what a hook traces: our own span when there is no inner
// tracer (own), else the tenant attributes on the span inner started. The
// attributes are made only for a span that records (a sampler drops most
// in production), so a sampler does not see them at the span's start.
func (x *pgxTracer) begin(ctx context.Context, key any, own bool, name, sql string) context.Context {
	tn, ok := tenant.FromContext(ctx)
	c := &call{start: time.Now(), set: x.t.card.set(tn, ok), own: own}
	if own {
		ctx, c.span = x.t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	} else {
		c.span = trace.SpanFromContext(ctx)
	}
	if c.span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 5)
		attrs = append(attrs, spanAttrs(tn, ok)...)
		if own {
			attrs = append(attrs, dbSystem, attribute.String("db.operation.name", name))
			if sql != "" && !x.t.omitSQL {
				attrs = append(attrs, attribute.String("db.query.text", sql))
			}
		}
		c.span.SetAttributes(attrs...)
	}
	return context.WithValue(ctx, key, c)
}

// end ends c's span, if ours, with err's status.
func (c *call) end(err error) {
	if !c.own {
		return
	}
	if err != nil {
		c.span.RecordError(err)
		c.span.SetStatus(codes.Error, err.Error())
	}
	c.span.End()
}

// statement records one statement's metrics.
func (t *Telemetry) statement(ctx context.Context, l *label, d time.Duration, err error) {
	t.stmts.Add(ctx, 1, l.add...)
	t.latency.Record(ctx, d.Seconds(), l.rec...)
	if err != nil {
		t.errs.Add(ctx, 1, l.add...)
	}
}

// TraceQueryStart implements pgx.QueryTracer.
func (x *pgxTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if x.inner != nil {
		ctx = x.inner.TraceQueryStart(ctx, conn, data)
	}
	return x.begin(ctx, queryKey{}, x.inner == nil, operation(data.SQL), data.SQL)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (x *pgxTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if x.inner != nil {
		x.inner.TraceQueryEnd(ctx, conn, data)
	}
	if c, ok := ctx.Value(queryKey{}).(*call); ok {
		x.t.statement(ctx, c.set, time.Since(c.start), data.Err)
		c.end(data.Err)
	}
}

// TraceBatchStart implements pgx.BatchTracer.
func (x *pgxTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if x.batch != nil {
		ctx = x.batch.TraceBatchStart(ctx, conn, data)
	}
	return x.begin(ctx, batchKey{}, x.inner == nil, "batch", "")
}

// TraceBatchQuery implements pgx.BatchTracer: each statement of the batch
// is counted, its latency measured from the batch's start.
func (x *pgxTracer) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	if x.batch != nil {
		x.batch.TraceBatchQuery(ctx, conn, data)
	}
	if c, ok := ctx.Value(batchKey{}).(*call); ok {
		x.t.statement(ctx, c.set, time.Since(c.start), data.Err)
		if c.own && data.Err != nil {
			c.span.RecordError(data.Err)
		}
	}
}

// TraceBatchEnd implements pgx.BatchTracer.
func (x *pgxTracer) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	if x.batch != nil {
		x.batch.TraceBatchEnd(ctx, conn, data)
	}
	if c, ok := ctx.Value(batchKey{}).(*call); ok {
		c.end(data.Err)
	}
}

// TracePrepareStart implements pgx.PrepareTracer.
func (x *pgxTracer) TracePrepareStart(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	if x.prepare != nil {
		ctx = x.prepare.TracePrepareStart(ctx, conn, data)
	}
	return x.begin(ctx, prepareKey{}, x.inner == nil, "prepare", data.SQL)
}

// TracePrepareEnd implements pgx.PrepareTracer.
func (x *pgxTracer) TracePrepareEnd(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareEndData) {
	if x.prepare != nil {
		x.prepare.TracePrepareEnd(ctx, conn, data)
	}
	if c, ok := ctx.Value(prepareKey{}).(*call); ok {
		c.end(data.Err)
	}
}

// operation is the first keyword of sql, upper case ("query" if none).
func operation(sql string) string {
	sql = strings.TrimLeft(sql, " \t\r\n(")
	end := 0
	for end < len(sql) && end < 16 {
		b := sql[end]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z') {
			break
		}
		end++
	}
	if end == 0 {
		return "query"
	}
	return strings.ToUpper(sql[:end])
}

// Observer returns the pool metrics' [pgtenant.Observer], for a pool's
// Config.Observer: tenancy.db.pool.wait, .held and .refused.
func (t *Telemetry) Observer() pgtenant.Observer { return (*observer)(t) }

type observer Telemetry

func (o *observer) Acquired(ctx context.Context, tn tenant.Tenant, wait time.Duration, err error) {
	l := o.card.set(tn, true)
	o.wait.Record(ctx, wait.Seconds(), l.rec...)
	if err != nil {
		o.refused.Add(ctx, 1, l.add...)
		return
	}
	o.held.Add(ctx, 1, l.add...)
}

func (o *observer) Released(tn tenant.Tenant, _ time.Duration) {
	o.held.Add(context.Background(), -1, o.card.set(tn, true).add...)
}
