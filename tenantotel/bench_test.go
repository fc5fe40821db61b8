package tenantotel_test

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
	"github.com/tenancykit/tenancy/tenantotel"
)

// BenchmarkQueryRowTelemetry: a scoped read of one row, 8 tenants
// rotating, with no instrumentation (telemetry=off) and with tenantotel's
// tracer and Observer on a real SDK, metrics aggregated for a manual
// reader and spans batched to an exporter that forgets them:
// telemetry=metrics records no spans (a no-op TracerProvider),
// telemetry=sampled samples 1 % of the traces (TraceIDRatioBased), and
// telemetry=full records every span. client-µs/op is the client
// process's CPU per read.
func BenchmarkQueryRowTelemetry(b *testing.B) {
	pg := testenv.PostgreSQL(b)
	var tenants []tenant.Tenant
	for range 8 {
		tenants = append(tenants, testenv.Tenant(b, "bench"))
	}
	sharedItems(b, pg, "bench_items", tenants...)
	for _, mode := range []string{"serial", "parallel"} {
		for _, tel := range []string{"off", "metrics", "sampled", "full"} {
			b.Run("mode="+mode+"/telemetry="+tel, func(b *testing.B) {
				cfg := pg.AppConfig(b)
				pcfg := pgtenant.Config{PoolConfig: cfg, Mode: pgtenant.SharedTables}
				if tel != "off" {
					sampler := sdktrace.AlwaysSample()
					if tel == "sampled" {
						sampler = sdktrace.TraceIDRatioBased(0.01)
					}
					tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sampler))
					mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
					b.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
					var provider trace.TracerProvider = tp
					if tel == "metrics" {
						provider = noop.NewTracerProvider()
					}
					t, err := tenantotel.New(tenantotel.Config{TracerProvider: provider, MeterProvider: mp})
					if err != nil {
						b.Fatal(err)
					}
					cfg.ConnConfig.Tracer = t.Tracer(nil)
					pcfg.Observer = t.Observer()
				}
				p, err := pgtenant.New(context.Background(), pcfg)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(p.Close)
				ctxs := make([]context.Context, len(tenants))
				for i, tn := range tenants {
					ctxs[i] = tenant.NewContext(context.Background(), tn)
				}
				op := func(i int) error {
					var name string
					return p.QueryRow(ctxs[i%len(ctxs)], "SELECT name FROM bench_items LIMIT 1").Scan(&name)
				}
				for i := range 200 {
					if err := op(i); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				start := clientCPU()
				defer func() {
					b.StopTimer()
					b.ReportMetric(float64((clientCPU()-start).Microseconds())/float64(b.N), "client-µs/op")
				}()
				b.ResetTimer()
				if mode == "serial" {
					for i := 0; i < b.N; i++ {
						if err := op(i); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				var seq atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					i := int(seq.Add(1))
					for pb.Next() {
						i++
						if err := op(i); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// clientCPU is the CPU time this process (the client) has used: wall time
// on the shared two-core machine moves by ±30 % between runs, the client's
// CPU per operation much less, and it is what instrumentation adds.
func clientCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
