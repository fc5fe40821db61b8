package pgtenant_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
)

// TestQueryRowAllocations keeps the lean path lean: a warm scoped QueryRow
// allocates no more than the same read through plain pgxpool (a pool whose
// connections carry the tenant's settings as session parameters) — two more
// in QueryExecModeExec, where pgconn converts the scope
// statement's row description on every call as it does the statement's. An
// allocation added per statement (an error target that escapes on the
// success path, say, as one did) fails it; the benchmarks report the
// figures.
func TestQueryRowAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts under -short are not the point")
	}
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "allocs", 1, 3)[0]
	for mode, slack := range map[pgx.QueryExecMode]float64{pgx.QueryExecModeCacheStatement: 0, pgx.QueryExecModeExec: 2} {
		t.Run(mode.String(), func(t *testing.T) {
			p := newPool(t, pg, func(c *pgtenant.Config) {
				c.PoolConfig.MaxConns = 1
				c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode
			})
			raw := tenantSessionPool(t, pg, tn, mode, func(c *pgxpool.Config) { c.MaxConns = 1 })
			ctx := ctxFor(tn)
			var name string
			read := func(q interface {
				QueryRow(context.Context, string, ...any) pgx.Row
			}, ctx context.Context) func() {
				return func() {
					if err := q.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 2).Scan(&name); err != nil {
						t.Fatal(err)
					}
				}
			}
			scopedRead, rawRead := read(p, ctx), read(raw, context.Background())
			scopedRead() // warm: connection, prepared statements
			rawRead()
			scoped := testing.AllocsPerRun(200, scopedRead)
			plain := testing.AllocsPerRun(200, rawRead)
			if name != tn.Slug+"-2" {
				t.Fatalf("read %q", name)
			}
			t.Logf("allocations per QueryRow: pgtenant %.1f, pgxpool %.1f", scoped, plain)
			if scoped > plain+slack {
				t.Errorf("pgtenant allocates %.1f per QueryRow, plain pgxpool %.1f: allowed %.0f above", scoped, plain, slack)
			}
		})
	}
}
