package tenantotel_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/provision/provisiontest"
	"github.com/tenancykit/tenancy/tenant"
	"github.com/tenancykit/tenancy/tenantotel"
)

func Example() {
	// Two tenants with a notes table, in a throwaway database.
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	// In a service: your TracerProvider and MeterProvider (OTLP, stdout);
	// here in-memory ones, to print what was recorded.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	card, _ := tenantotel.AllowList(env.Tenants[0].ID) // acme by name, the rest as "other"
	tel, err := tenantotel.New(tenantotel.Config{TracerProvider: tp, MeterProvider: mp, Cardinality: card})
	if err != nil {
		panic(err)
	}

	cfg, _ := pgxpool.ParseConfig(env.AppURL)
	cfg.ConnConfig.Tracer = tel.Tracer(nil) // or tel.Tracer(otelpgx.NewTracer())
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{
		PoolConfig:  cfg,
		Observer:    tel.Observer(), // pool wait and connections held, per tenant
		TagSessions: true,           // pg_stat_activity.application_name = tenant:<id>
	})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	for _, tn := range env.Tenants {
		ctx := tenant.NewContext(context.Background(), tn.Tenant())
		if _, err := pool.Exec(ctx, "INSERT INTO notes (body) VALUES ('hi')"); err != nil {
			panic(err)
		}
	}
	for _, s := range spans.Ended() {
		for _, kv := range s.Attributes() {
			if kv.Key == tenantotel.TenantSlug && s.Name() == "INSERT" {
				fmt.Println("span", s.Name(), "tenant.slug", kv.Value.AsString())
			}
		}
	}
	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != "tenancy.db.statements" {
			continue
		}
		for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
			id, _ := p.Attributes.Value(tenantotel.TenantID)
			if id.AsString() == "other" {
				fmt.Println("tenancy.db.statements other:", p.Value)
			} else if id.AsString() == env.Tenants[0].ID {
				fmt.Println("tenancy.db.statements acme:", p.Value)
			}
		}
	}
	// Unordered output:
	// span INSERT tenant.slug acme
	// span INSERT tenant.slug globex
	// tenancy.db.statements acme: 1
	// tenancy.db.statements other: 1
}
