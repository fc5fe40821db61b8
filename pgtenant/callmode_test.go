package pgtenant_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
)

// TestCallExecModes: a pgx.QueryExecMode passed to one call is honoured on
// every pool mode as pgx honours it — the values equal plain pgx's with the
// same argument — and, but for the simple protocol, the call takes the
// statement path: one round trip, no transaction of its own (no "begin"
// traced), the caller's SQL traced.
func TestCallExecModes(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "cx", 1, 2)[0]
	ctx := ctxFor(tn)
	calls := []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol}
	for _, poolMode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		for _, call := range calls {
			t.Run(poolMode.String()+"/"+call.String(), func(t *testing.T) {
				rec := &recorder{}
				p := newPool(t, pg, func(c *pgtenant.Config) {
					c.PoolConfig.ConnConfig.DefaultQueryExecMode = poolMode
					c.PoolConfig.ConnConfig.Tracer = rec
				})
				oracle := tenantSessionPool(t, pg, tn, poolMode, nil)
				read := func(ctx context.Context, q interface {
					Query(context.Context, string, ...any) (pgx.Rows, error)
				}) [][]any {
					rows, err := q.Query(ctx, "SELECT name, $1::int + 1, $2::text, now()::date = current_date, '1.5'::numeric::float8, '{1,2}'::int[] FROM items ORDER BY id", call, 41, "x")
					if err != nil {
						t.Fatal(err)
					}
					out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
					if err != nil {
						t.Fatal(err)
					}
					return out
				}
				for range 2 { // cold, then prepared
					if diff := cmp.Diff(read(context.Background(), oracle), read(ctx, p)); diff != "" {
						t.Errorf("values (-pgx +pgtenant):\n%s", diff)
					}
					var n int
					if err := p.QueryRow(ctx, "SELECT count(*) FROM items WHERE name <> $1", call, "").Scan(&n); err != nil || n != 2 {
						t.Errorf("QueryRow: %d, %v", n, err)
					}
					if _, err := p.Exec(ctx, "UPDATE items SET name = name WHERE id = $1", call, 1); err != nil {
						t.Errorf("Exec: %v", err)
					}
				}
				rec.mu.Lock()
				defer rec.mu.Unlock()
				began := slices.ContainsFunc(rec.queries, func(s string) bool { return strings.Contains(s, "|commit|") })
				if began {
					// Every mode, the simple protocol too, goes the one
					// statement path: scope and statement in one round trip.
					t.Errorf("a transaction of its own (its commit traced); traced %q", rec.queries)
				}
			})
		}
	}
}
