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
// reading one row, on MaxConns 8. The benchmark reports the quiet tenants'
// p99 latency under the noisy tenant divided by their p99 alone:
// victim-p99-ratio. The quiet reads alternate between alone and under the
// noise in four phases on the same pool, half of b.N each, so the
// machine's drift falls on both alike; ns/op covers both halves and the
// noise's start and stop. limit=off is a plain pool, where the noisy
// tenant's 32 callers queue ahead of everyone; limit=on sets TenantLimits
// (the fair share: 2 connections per tenant). Run it with -benchtime
// 4000x or more: a p99 needs a few thousand reads on a noisy machine.
func BenchmarkNoisyNeighbour(b *testing.B) {
	pg := testenv.PostgreSQL(b)
	tenants := createTenants(b, pg, "noise", 5, 10)
	noisy, quiet := tenants[0], tenants[1:]
	for _, limit := range []string{"off", "on", "apart"} {
		b.Run("limit="+limit, func(b *testing.B) {
			cfg := pg.AppConfig(b)
			cfg.MaxConns, cfg.MinConns = 8, 8
			p := newPool(b, pg, func(c *pgtenant.Config) {
				c.PoolConfig = cfg
				if limit == "on" {
					c.TenantLimits = &pgtenant.TenantLimits{}
				}
				if limit == "apart" {
					c.PoolConfig.MaxConns, c.PoolConfig.MinConns = 6, 6
				}
			})
			// apart: the noisy tenant on a pool of its own with its budget's
			// 2 connections, the floor any in-pool limit can reach here.
			noisyPool := p
			if limit == "apart" {
				ncfg := pg.AppConfig(b)
				ncfg.MaxConns, ncfg.MinConns = 2, 2
				noisyPool = newPool(b, pg, func(c *pgtenant.Config) { c.PoolConfig = ncfg })
			}
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
			// Alone and under the noise in alternating phases, so that the
			// machine's drift falls on both alike.
			const phases = 4
			n := max(b.N/phases, 50)
			var aloneLat, lat []time.Duration
			b.ResetTimer()
			for range phases {
				aloneLat = append(aloneLat, quietRun(n)...)
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
							if _, err := noisyPool.Exec(nctx, "SELECT pg_sleep(0.02)"); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				time.Sleep(100 * time.Millisecond) // let the noise fill the pool
				lat = append(lat, quietRun(n)...)
				close(stop)
				wg.Wait()
			}
			b.StopTimer()
			alone := p99(aloneLat)
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
