package pgtenant_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// BenchmarkNoisyNeighbour: one noisy tenant with 32 goroutines of slow
// statements (pg_sleep 20 ms) and 4 quiet tenants, one goroutine each,
// reading one row, on MaxConns 8. Each op is one quiet read under the
// noise; the benchmark reports the quiet tenants' p99 latency under the
// noisy tenant divided by their p99 alone: victim-p99-ratio. "Alone" is the
// lower of two runs of as many reads on the same pool, one before the noise
// and one after it, so a hiccup of the machine in one of them does not
// flatter the ratio. limit=off is a plain pool, where the noisy tenant's 32
// callers queue ahead of everyone; limit=on sets TenantLimits (the fair
// share: 2 connections per tenant). Run it with -benchtime 400x or more:
// a p99 needs a few hundred reads.
func BenchmarkNoisyNeighbour(b *testing.B) {
	pg := testenv.PostgreSQL(b)
	tenants := createTenants(b, pg, "noise", 5, 10)
	noisy, quiet := tenants[0], tenants[1:]
	for _, limit := range []string{"off", "on"} {
		b.Run("limit="+limit, func(b *testing.B) {
			cfg := pg.AppConfig(b)
			cfg.MaxConns, cfg.MinConns = 8, 8
			p := newPool(b, pg, func(c *pgtenant.Config) {
				c.PoolConfig = cfg
				if limit == "on" {
					c.TenantLimits = &pgtenant.TenantLimits{}
				}
			})
			// quietRun runs n reads spread over the quiet tenants, one
			// goroutine each, and returns their latencies.
			quietRun := func(n int) []time.Duration {
				var mu sync.Mutex
				var lat []time.Duration
				var wg sync.WaitGroup
				for qi, q := range quiet {
					ctx := tenant.NewContext(context.Background(), q)
					wg.Go(func() {
						var mine []time.Duration
						for i := qi; i < n; i += len(quiet) {
							start := time.Now()
							var name string
							if err := p.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 1+i%10).Scan(&name); err != nil {
								b.Error(err)
								return
							}
							mine = append(mine, time.Since(start))
						}
						mu.Lock()
						lat = append(lat, mine...)
						mu.Unlock()
					})
				}
				wg.Wait()
				return lat
			}
			quietRun(400) // warm every connection
			n := max(b.N, 100)
			alone := p99(quietRun(n))

			stop := make(chan struct{})
			var wg sync.WaitGroup
			nctx := tenant.NewContext(context.Background(), noisy)
			for range 32 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := p.Exec(nctx, "SELECT pg_sleep(0.02)"); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			time.Sleep(100 * time.Millisecond) // let the noise fill the pool
			b.ResetTimer()
			lat := quietRun(n)
			b.StopTimer()
			close(stop)
			wg.Wait()
			alone = min(alone, p99(quietRun(n)))
			b.ReportMetric(float64(p99(lat))/float64(alone), "victim-p99-ratio")
			b.ReportMetric(float64(p99(lat).Microseconds()), "victim-p99-µs")
			b.ReportMetric(float64(alone.Microseconds()), "alone-p99-µs")
		})
	}
}

func p99(lat []time.Duration) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*99/100)]
}

// BenchmarkQueryRowBudget is BenchmarkQueryRow's scoped read with the
// budget machinery on: impl=plain has none, impl=limits sets TenantLimits
// (the gate; the statement_timeout parameter is empty), impl=timeout also
// a StatementTimeout (set in every scope statement), impl=tagged sets
// TagSessions (application_name in the scope statement), impl=observed an
// Observer that does nothing.
func BenchmarkQueryRowBudget(b *testing.B) {
	env := setupBench(b)
	pg := testenv.PostgreSQL(b)
	for _, mode := range []string{"serial", "parallel"} {
		parallel := mode == "parallel"
		for _, impl := range []string{"plain", "limits", "timeout", "tagged", "observed"} {
			b.Run("mode="+mode+"/impl="+impl, func(b *testing.B) {
				p := newPool(b, pg, func(c *pgtenant.Config) {
					switch impl {
					case "limits":
						c.TenantLimits = &pgtenant.TenantLimits{}
					case "timeout":
						c.TenantLimits = &pgtenant.TenantLimits{Default: pgtenant.Limits{StatementTimeout: 5 * time.Second}}
					case "tagged":
						c.TagSessions = true
					case "observed":
						c.Observer = nopObserver{}
					}
				})
				run(b, parallel, func(i int) error {
					var name string
					return p.QueryRow(env.ctxs[i%benchTenants], "SELECT name FROM items WHERE id = $1", 1+i%benchRows).Scan(&name)
				})
			})
		}
	}
}

type nopObserver struct{}

func (nopObserver) Acquired(context.Context, tenant.Tenant, time.Duration, error) {}
func (nopObserver) Released(tenant.Tenant, time.Duration)                         {}
