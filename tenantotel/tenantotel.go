// Package tenantotel gives the tenancy SDK's PostgreSQL and Redis traffic
// OpenTelemetry spans and metrics that name their tenant.
//
// One [Telemetry], made by [New] from a TracerProvider and a MeterProvider
// (the global ones by default), provides:
//
//   - [Telemetry.Tracer]: a pgx tracer for the pool's ConnConfig.Tracer.
//     Every statement, batch and prepare of a [pgtenant.Pool] gets a span
//     with the tenant.id and tenant.slug attributes (pgtenant calls the
//     tracer with the caller's context, which carries the tenant). Given
//     another tracer (otelpgx's, say), it adds the attributes to that
//     tracer's span instead of starting its own;
//   - statement metrics from the same hooks, and pool metrics as the
//     pool's [pgtenant.Observer] (Config.Observer): the time a tenant waits
//     for a connection and the connections it holds;
//   - [Telemetry.WrapRedis]: a rueidis.Client wrapper with a span and
//     metrics per command (rueidis's own hook and OpenTelemetry modules are
//     not served by this project's module proxy, so the wrapper is ours).
//
// Spans carry the tenant ID as it is. Metrics carry a bounded attribute
// instead, so that a fleet of tenants cannot explode a metrics backend:
// [HashBuckets] (the default, 64 buckets: tenant.bucket) or [AllowList]
// (tenant.id for the tenants listed, "other" for the rest). A statement
// with no tenant in its context (the pool's Unscoped work) is recorded
// with tenant.id "none".
//
// The metrics:
//
//	tenancy.db.statements          counter    statements run
//	tenancy.db.errors              counter    statements that failed
//	tenancy.db.statement.duration  histogram  s, statement latency
//	tenancy.db.pool.wait           histogram  s, wait for a connection
//	tenancy.db.pool.held           updown     connections held
//	tenancy.db.pool.refused        counter    acquires that got none
//	tenancy.redis.commands         counter    commands (a DoMulti counts each)
//	tenancy.redis.errors           counter    commands that failed (nil is no error)
//	tenancy.redis.duration         histogram  s, latency per call
//
// To name the tenant on the server session as well (pg_stat_activity,
// log_line_prefix %a), set pgtenant's Config.TagSessions.
package tenantotel

import (
	"fmt"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancykit/tenancy/tenant"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/tenancykit/tenancy/tenantotel"

// Attribute keys.
const (
	// TenantID is the span attribute (and, with AllowList, the metric
	// attribute) that names the tenant.
	TenantID = attribute.Key("tenant.id")
	// TenantSlug is the span attribute of the tenant's slug.
	TenantSlug = attribute.Key("tenant.slug")
	// TenantBucket is the metric attribute of HashBuckets.
	TenantBucket = attribute.Key("tenant.bucket")
)

// Config configures [New]. Zero fields mean their documented defaults.
type Config struct {
	// TracerProvider makes the spans. Defaults to otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the metrics. Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Cardinality bounds the tenant attribute of metrics. Defaults to
	// HashBuckets(64).
	Cardinality Cardinality
	// OmitStatement leaves the SQL text out of spans (db.query.text).
	// Defaults to false: the text is recorded, never the arguments.
	OmitStatement bool
}

// Cardinality maps tenants to the bounded set of metric attributes; make
// one with [HashBuckets] or [AllowList].
type Cardinality struct {
	buckets []*label
	allowed map[string]*label
	other   *label
	none    *label
}

// label is one value of the metric attributes, with the measurement
// options made once (an option made per call would allocate).
type label struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newLabel(kv attribute.KeyValue) *label {
	o := metric.WithAttributeSet(attribute.NewSet(kv))
	return &label{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

// HashBuckets records a tenant's metrics under tenant.bucket, one of n
// values ("0" to n-1, by an FNV-1a hash of the tenant ID). n must be 1 to
// 4096.
func HashBuckets(n int) (Cardinality, error) {
	if n < 1 || n > 4096 {
		return Cardinality{}, fmt.Errorf("tenantotel: HashBuckets(%d): use 1 to 4096 buckets", n)
	}
	c := Cardinality{buckets: make([]*label, n), none: newLabel(TenantID.String("none"))}
	for i := range c.buckets {
		c.buckets[i] = newLabel(TenantBucket.String(strconv.Itoa(i)))
	}
	return c, nil
}

// AllowList records the metrics of the tenants whose IDs are listed under
// tenant.id, and every other tenant's under tenant.id "other".
func AllowList(ids ...string) (Cardinality, error) {
	c := Cardinality{allowed: make(map[string]*label, len(ids)), other: newLabel(TenantID.String("other")), none: newLabel(TenantID.String("none"))}
	for _, id := range ids {
		if err := tenant.ValidateID(id); err != nil {
			return Cardinality{}, fmt.Errorf("tenantotel: AllowList: %w", err)
		}
		c.allowed[id] = newLabel(TenantID.String(id))
	}
	return c, nil
}

// set returns the metric attributes of t (ok false: no tenant).
func (c *Cardinality) set(t tenant.Tenant, ok bool) *label {
	switch {
	case !ok:
		return c.none
	case c.buckets != nil:
		// FNV-1a, inline: hash/fnv would allocate per call.
		h := uint32(2166136261)
		for i := 0; i < len(t.ID); i++ {
			h ^= uint32(t.ID[i])
			h *= 16777619
		}
		return c.buckets[h%uint32(len(c.buckets))]
	}
	if s, found := c.allowed[t.ID]; found {
		return s
	}
	return c.other
}

// Telemetry records spans and metrics for one or more pools and Redis
// clients. It is safe for concurrent use.
type Telemetry struct {
	tracer   trace.Tracer
	card     Cardinality
	omitSQL  bool
	stmts    metric.Int64Counter
	errs     metric.Int64Counter
	latency  metric.Float64Histogram
	wait     metric.Float64Histogram
	held     metric.Int64UpDownCounter
	refused  metric.Int64Counter
	rcmds    metric.Int64Counter
	rerrs    metric.Int64Counter
	rlatency metric.Float64Histogram
}

// New makes a Telemetry from cfg.
func New(cfg Config) (*Telemetry, error) {
	tp, mp := cfg.TracerProvider, cfg.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	t := &Telemetry{tracer: tp.Tracer(ScopeName), card: cfg.Cardinality, omitSQL: cfg.OmitStatement}
	if t.card.buckets == nil && t.card.allowed == nil {
		t.card, _ = HashBuckets(64)
	}
	m := mp.Meter(ScopeName)
	var err error
	seconds := metric.WithUnit("s")
	for _, mk := range []func() error{
		func() (e error) {
			t.stmts, e = m.Int64Counter("tenancy.db.statements", metric.WithUnit("{statement}"), metric.WithDescription("Statements run, per tenant."))
			return e
		},
		func() (e error) {
			t.errs, e = m.Int64Counter("tenancy.db.errors", metric.WithUnit("{statement}"), metric.WithDescription("Statements that failed, per tenant."))
			return e
		},
		func() (e error) {
			t.latency, e = m.Float64Histogram("tenancy.db.statement.duration", seconds, metric.WithDescription("Statement latency, per tenant."))
			return e
		},
		func() (e error) {
			t.wait, e = m.Float64Histogram("tenancy.db.pool.wait", seconds, metric.WithDescription("Time a tenant's call waited for a connection."))
			return e
		},
		func() (e error) {
			t.held, e = m.Int64UpDownCounter("tenancy.db.pool.held", metric.WithUnit("{connection}"), metric.WithDescription("Connections a tenant holds."))
			return e
		},
		func() (e error) {
			t.refused, e = m.Int64Counter("tenancy.db.pool.refused", metric.WithUnit("{acquire}"), metric.WithDescription("Acquires that got no connection (budget, context, pool error)."))
			return e
		},
		func() (e error) {
			t.rcmds, e = m.Int64Counter("tenancy.redis.commands", metric.WithUnit("{command}"), metric.WithDescription("Redis commands, per tenant."))
			return e
		},
		func() (e error) {
			t.rerrs, e = m.Int64Counter("tenancy.redis.errors", metric.WithUnit("{command}"), metric.WithDescription("Redis commands that failed, per tenant."))
			return e
		},
		func() (e error) {
			t.rlatency, e = m.Float64Histogram("tenancy.redis.duration", seconds, metric.WithDescription("Redis call latency, per tenant."))
			return e
		},
	} {
		if err = mk(); err != nil {
			return nil, fmt.Errorf("tenantotel: %w", err)
		}
	}
	return t, nil
}

// spanAttrs are the span attributes of t.
func spanAttrs(t tenant.Tenant, ok bool) []attribute.KeyValue {
	if !ok {
		return []attribute.KeyValue{noTenant}
	}
	return []attribute.KeyValue{TenantID.String(t.ID), TenantSlug.String(t.Slug)}
}

var noTenant = TenantID.String("none")
