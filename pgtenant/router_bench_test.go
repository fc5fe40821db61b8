package pgtenant_test

import (
	"context"
	"testing"

	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// BenchmarkQueryRowRouter compares a QueryRow through a Router (two
// placements, the tenant's placement cached) with the same QueryRow on the
// placement's Pool and on raw pgx: the cost of routing. BENCHMARKS.md has
// the figures and the command.
func BenchmarkQueryRowRouter(b *testing.B) {
	env := setupBench(b)
	pg := testenv.PostgreSQL(b)
	for _, mode := range []string{"serial", "parallel"} {
		parallel := mode == "parallel"
		b.Run("mode="+mode+"/impl=raw", func(b *testing.B) {
			p := benchPool(b, env.rawURL)
			run(b, parallel, func(i int) error {
				var name string
				return p.QueryRow(context.Background(), env.rawSQL[i%benchTenants], 1+i%benchRows).Scan(&name)
			})
		})
		b.Run("mode="+mode+"/impl=pool", func(b *testing.B) {
			p := newPool(b, pg, nil)
			run(b, parallel, func(i int) error {
				var name string
				return p.QueryRow(env.ctxs[i%benchTenants], "SELECT name FROM items WHERE id = $1", 1+i%benchRows).Scan(&name)
			})
		})
		b.Run("mode="+mode+"/impl=router", func(b *testing.B) {
			p := newPool(b, pg, nil)
			r, err := pgtenant.NewRouter(pgtenant.RouterConfig{
				Placements: map[string]*pgtenant.Pool{"one": p, "two": newPool(b, pg, nil)},
				Locator: pgtenant.LocatorFunc(func(context.Context, tenant.Tenant) (string, error) {
					return "one", nil
				}),
			})
			if err != nil {
				b.Fatal(err)
			}
			run(b, parallel, func(i int) error {
				var name string
				return r.QueryRow(env.ctxs[i%benchTenants], "SELECT name FROM items WHERE id = $1", 1+i%benchRows).Scan(&name)
			})
		})
	}
}

// BenchmarkRouterLookup is the Router's own work per call, without the
// statement: finding the cached placement of the context's tenant.
func BenchmarkRouterLookup(b *testing.B) {
	pg := testenv.PostgreSQL(b)
	p := newPool(b, pg, nil)
	r, err := pgtenant.NewRouter(pgtenant.RouterConfig{
		Placements: map[string]*pgtenant.Pool{"one": p},
		Locator:    pgtenant.LocatorFunc(func(context.Context, tenant.Tenant) (string, error) { return "one", nil }),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := tenant.NewContext(context.Background(), tenant.Tenant{ID: "bench-1", Slug: "bench"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Pool(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
