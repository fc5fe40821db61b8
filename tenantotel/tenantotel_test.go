package tenantotel_test

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
	"github.com/tenancykit/tenancy/tenantotel"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// recorder is an in-memory span exporter and a manual metric reader.
type recorder struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = r.mp.Shutdown(context.Background())
	})
	return r
}

// spanTenants returns "<span name> <tenant.id>" for every ended span but
// the prepares (one per statement new on a connection, so as many as the
// connections the pool happened to use).
func (r *recorder) spanTenants() []string {
	var out []string
	for _, s := range r.spans.Ended() {
		if s.Name() == "prepare" {
			continue
		}
		id := ""
		for _, kv := range s.Attributes() {
			if kv.Key == tenantotel.TenantID {
				id = kv.Value.AsString()
			}
		}
		out = append(out, s.Name()+" "+id)
	}
	sort.Strings(out)
	return out
}

// sums returns a counter's (or up-down counter's) value per value of key,
// or a histogram's count per value of key.
func (r *recorder) sums(t *testing.T, name string, key attribute.Key) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					v, _ := p.Attributes.Value(key)
					out[v.AsString()] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					v, _ := p.Attributes.Value(key)
					out[v.AsString()] += int64(p.Count)
				}
			default:
				t.Fatalf("metric %s has data %T", name, m.Data)
			}
		}
	}
	return out
}

// sharedItems creates an RLS-protected table in public for SharedTables
// pools, with one row per tenant.
func sharedItems(t testing.TB, pg *testenv.PG, table string, tenants ...tenant.Tenant) {
	t.Helper()
	ctx := context.Background()
	owner := pg.OwnerPool(t)
	tbl := pgx.Identifier{table}.Sanitize()
	policy := "tenant_id = nullif(current_setting('app.tenant_id', true), '')"
	for _, s := range []string{
		"CREATE TABLE " + tbl + " (tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'), name text NOT NULL)",
		"ALTER TABLE " + tbl + " ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE " + tbl + " FORCE ROW LEVEL SECURITY",
		"CREATE POLICY tenant_isolation ON " + tbl + " USING (" + policy + ") WITH CHECK (" + policy + ")",
		"GRANT SELECT, INSERT ON " + tbl + " TO " + pgx.Identifier{pg.AppRole}.Sanitize(),
	} {
		if _, err := owner.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	for _, tn := range tenants {
		err := pgx.BeginFunc(ctx, owner, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", tn.ID); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+tbl+" VALUES ($1, $2)", tn.ID, tn.Slug)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func newPool(t *testing.T, pg *testenv.PG, tel *tenantotel.Telemetry, inner pgx.QueryTracer) *pgtenant.Pool {
	t.Helper()
	cfg := pg.AppConfig(t)
	cfg.ConnConfig.Tracer = tel.Tracer(inner)
	p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg, Mode: pgtenant.SharedTables, Observer: tel.Observer()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestSpansAndMetricsNameTheTenant: two tenants run statements, a failing
// one and a batch; every span carries its tenant's ID, and the metrics
// count each tenant's statements, errors, waits and connections under the
// allow-list's attribute (the unlisted tenant as "other").
func TestSpansAndMetricsNameTheTenant(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	a, b := testenv.Tenant(t, "otela"), testenv.Tenant(t, "otelb")
	sharedItems(t, pg, "otel_items", a, b)
	rec := newRecorder(t)
	card, err := tenantotel.AllowList(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	tel, err := tenantotel.New(tenantotel.Config{TracerProvider: rec.tp, MeterProvider: rec.mp, Cardinality: card})
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(t, pg, tel, nil)
	rec.spans = tracetest.NewSpanRecorder() // forget the pool's own start-up statements
	rec.tp.RegisterSpanProcessor(rec.spans)
	before := rec.sums(t, "tenancy.db.statements", tenantotel.TenantID)

	ctx := context.Background()
	for _, tn := range []tenant.Tenant{a, b} {
		tctx := tenant.NewContext(ctx, tn)
		var name string
		if err := p.QueryRow(tctx, "SELECT name FROM otel_items").Scan(&name); err != nil || name != tn.Slug {
			t.Fatalf("%s sees %q (%v)", tn.Slug, name, err)
		}
		if _, err := p.Exec(tctx, "INSERT INTO otel_items (name) VALUES ($1)", tn.Slug+"-2"); err != nil {
			t.Fatal(err)
		}
	}
	// b alone: a failing statement and a batch of two.
	bctx := tenant.NewContext(ctx, b)
	if _, err := p.Exec(bctx, "SELECT 1/0"); err == nil {
		t.Fatal("SELECT 1/0 did not fail")
	}
	batch := &pgx.Batch{}
	batch.Queue("SELECT 1")
	batch.Queue("SELECT 2")
	if err := p.SendBatch(bctx, batch).Close(); err != nil {
		t.Fatal(err)
	}

	if diff := cmp.Diff([]string{
		"INSERT " + a.ID, "INSERT " + b.ID, "SELECT " + a.ID, "SELECT " + b.ID, "SELECT " + b.ID, "batch " + b.ID,
	}, rec.spanTenants()); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	got := rec.sums(t, "tenancy.db.statements", tenantotel.TenantID)
	for k, v := range before {
		got[k] -= v
	}
	if diff := cmp.Diff(map[string]int64{a.ID: 2, "other": 5}, got, cmpNonZero); diff != "" {
		t.Errorf("tenancy.db.statements (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{"other": 1}, rec.sums(t, "tenancy.db.errors", tenantotel.TenantID)); diff != "" {
		t.Errorf("tenancy.db.errors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{a.ID: 2, "other": 4}, rec.sums(t, "tenancy.db.pool.wait", tenantotel.TenantID)); diff != "" {
		t.Errorf("tenancy.db.pool.wait counts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{a.ID: 0, "other": 0}, rec.sums(t, "tenancy.db.pool.held", tenantotel.TenantID)); diff != "" {
		t.Errorf("tenancy.db.pool.held after every call returned (-want +got):\n%s", diff)
	}
	// While a transaction is open its tenant holds one connection.
	tx, err := p.Begin(bctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int64{a.ID: 0, "other": 1}, rec.sums(t, "tenancy.db.pool.held", tenantotel.TenantID)); diff != "" {
		t.Errorf("tenancy.db.pool.held in a transaction (-want +got):\n%s", diff)
	}
	_ = tx.Rollback(ctx)
}

var cmpNonZero = cmp.FilterValues(func(x, y map[string]int64) bool { return true }, cmp.Transformer("nonzero", func(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}))

// innerTracer stands for otelpgx: a tracer that starts its own spans.
type innerTracer struct{ tracer trace.Tracer }

func (i innerTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	ctx, _ = i.tracer.Start(ctx, "inner:"+strings.Fields(data.SQL)[0])
	return ctx
}

func (i innerTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	trace.SpanFromContext(ctx).End()
}

// TestTenantOnAnotherTracersSpans: wrapping another tracer (as otelpgx's)
// adds tenant.id to the spans it makes, and starts none of its own.
func TestTenantOnAnotherTracersSpans(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	a, b := testenv.Tenant(t, "innera"), testenv.Tenant(t, "innerb")
	sharedItems(t, pg, "inner_items", a, b)
	rec := newRecorder(t)
	card, _ := tenantotel.HashBuckets(4)
	tel, err := tenantotel.New(tenantotel.Config{TracerProvider: rec.tp, MeterProvider: rec.mp, Cardinality: card})
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(t, pg, tel, innerTracer{rec.tp.Tracer("inner")})
	rec.spans = tracetest.NewSpanRecorder()
	rec.tp.RegisterSpanProcessor(rec.spans)
	for _, tn := range []tenant.Tenant{a, b, b} {
		var name string
		if err := p.QueryRow(tenant.NewContext(context.Background(), tn), "SELECT name FROM inner_items").Scan(&name); err != nil || name != tn.Slug {
			t.Fatalf("%s sees %q (%v)", tn.Slug, name, err)
		}
	}
	if diff := cmp.Diff([]string{"inner:SELECT " + a.ID, "inner:SELECT " + b.ID, "inner:SELECT " + b.ID}, rec.spanTenants()); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	// Metrics: at most 4 bucket values, and each tenant always in one.
	got := rec.sums(t, "tenancy.db.statements", tenantotel.TenantBucket)
	if len(got) > 4+1 { // the buckets, and "" for the pool's own tenant-less statements
		t.Errorf("tenancy.db.statements has %d attribute values; want at most 4 buckets: %v", len(got), got)
	}
	var total int64
	for k, v := range got {
		if k != "" {
			total += v
		}
	}
	if total != 3 {
		t.Errorf("tenancy.db.statements over the buckets = %d; want 3", total)
	}
}

// TestRedisSpansAndMetrics: commands of two tenants through redistenant on
// a wrapped client carry each one's tenant.id; a nil reply is no error.
func TestRedisSpansAndMetrics(t *testing.T) {
	t.Parallel()
	raw := testenv.RedisClient(t)
	a, b := testenv.Tenant(t, "reda"), testenv.Tenant(t, "redb")
	rec := newRecorder(t)
	card, _ := tenantotel.AllowList(a.ID, b.ID)
	tel, err := tenantotel.New(tenantotel.Config{TracerProvider: rec.tp, MeterProvider: rec.mp, Cardinality: card})
	if err != nil {
		t.Fatal(err)
	}
	c := redistenant.New(tel.WrapRedis(raw), redistenant.Config{})
	ctx := context.Background()
	for _, tn := range []tenant.Tenant{a, b} {
		tctx := tenant.NewContext(ctx, tn)
		t.Cleanup(func() { _ = c.Do(tctx, c.B().Del().Key("k").Build()).Error() })
		if err := c.Do(tctx, c.B().Set().Key("k").Value(tn.Slug).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Do(tctx, c.B().Get().Key("k").Build()).ToString(); err != nil || got != tn.Slug {
			t.Fatalf("%s GET k = %q (%v)", tn.Slug, got, err)
		}
	}
	actx := tenant.NewContext(ctx, a)
	if err := c.Do(actx, c.B().Get().Key("missing").Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Fatalf("GET missing: %v", err)
	}
	if err := c.Do(actx, c.B().Incr().Key("k").Build()).Error(); err == nil {
		t.Fatal("INCR of a string did not fail")
	}
	for _, r := range c.DoMulti(actx, c.B().Get().Key("k").Build(), c.B().Get().Key("k").Build()) {
		if r.Error() != nil {
			t.Fatal(r.Error())
		}
	}
	if diff := cmp.Diff([]string{"GET " + a.ID, "GET " + a.ID, "GET " + b.ID, "INCR " + a.ID, "SET " + a.ID, "SET " + b.ID, "multi " + a.ID}, rec.spanTenants()); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{a.ID: 6, b.ID: 2}, rec.sums(t, "tenancy.redis.commands", tenantotel.TenantID)); diff != "" {
		t.Errorf("tenancy.redis.commands (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{a.ID: 1}, rec.sums(t, "tenancy.redis.errors", tenantotel.TenantID)); diff != "" {
		t.Errorf("tenancy.redis.errors (-want +got):\n%s", diff)
	}
}

func TestCardinalityInvalid(t *testing.T) {
	for _, n := range []int{0, -1, 4097} {
		if _, err := tenantotel.HashBuckets(n); err == nil {
			t.Errorf("HashBuckets(%d) succeeded", n)
		}
	}
	if _, err := tenantotel.AllowList("ok", "not ok!"); err == nil {
		t.Error("AllowList with an invalid tenant ID succeeded")
	}
}
