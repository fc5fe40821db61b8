package pgtenant_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// TestStressEveryRowBelongsToItsTenant runs 16 goroutines over 50 tenants on
// 4 connections, mixing every statement path, and checks that every row any
// statement returns carries the context's tenant.
func TestStressEveryRowBelongsToItsTenant(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "stress", 50, 3)
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 4 })

	const workers, perWorker = 16, 250
	var statements, rowsSeen atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	check := func(tn tenant.Tenant, tid, name string) {
		rowsSeen.Add(1)
		if tid != tn.ID || !strings.HasPrefix(name, tn.Slug+"-") {
			fail("tenant %s saw row (%s, %s)", tn.Slug, tid, name)
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				tn := tenants[(w*7+i*13)%len(tenants)]
				ctx := ctxFor(tn)
				statements.Add(1)
				switch i % 5 {
				case 0:
					rows, err := p.Query(ctx, "SELECT tenant_id, name FROM items")
					if err != nil {
						fail("query: %v", err)
						continue
					}
					for rows.Next() {
						var tid, name string
						if err := rows.Scan(&tid, &name); err != nil {
							fail("scan: %v", err)
						}
						check(tn, tid, name)
					}
					if err := rows.Err(); err != nil {
						fail("rows: %v", err)
					}
				case 1:
					var tid, name string
					if err := p.QueryRow(ctx, "SELECT tenant_id, name FROM items WHERE name = $1", tn.Slug+"-2").Scan(&tid, &name); err != nil {
						fail("queryrow: %v", err)
						continue
					}
					check(tn, tid, name)
				case 2:
					var tid, name string
					err := p.QueryRow(ctx, "INSERT INTO items (name) VALUES ($1) RETURNING tenant_id, name", fmt.Sprintf("%s-w%d-%d", tn.Slug, w, i)).Scan(&tid, &name)
					if err != nil {
						fail("insert: %v", err)
						continue
					}
					check(tn, tid, name)
				case 3:
					err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
						rows, _ := tx.Query(ctx, "SELECT tenant_id, name FROM items WHERE name LIKE '%-1'")
						var tid, name string
						_, err := pgx.ForEachRow(rows, []any{&tid, &name}, func() error { check(tn, tid, name); return nil })
						return err
					})
					if err != nil {
						fail("tx: %v", err)
					}
				case 4:
					b := &pgx.Batch{}
					var tid, name string
					b.Queue("SELECT tenant_id, name FROM items WHERE name = $1", tn.Slug+"-3").QueryRow(func(r pgx.Row) error {
						if err := r.Scan(&tid, &name); err != nil {
							return err
						}
						check(tn, tid, name)
						return nil
					})
					if err := p.SendBatch(ctx, b).Close(); err != nil {
						fail("batch: %v", err)
					}
				}
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if rowsSeen.Load() < int64(workers*perWorker) {
		t.Errorf("only %d rows seen in %d statements", rowsSeen.Load(), statements.Load())
	}
	t.Logf("%d statements, %d rows checked", statements.Load(), rowsSeen.Load())
	// Each tenant ends with exactly its own inserts.
	for _, tn := range tenants {
		var n, foreign int
		if err := p.QueryRow(ctxFor(tn), "SELECT count(*), count(*) FILTER (WHERE tenant_id <> $1) FROM items", tn.ID).Scan(&n, &foreign); err != nil {
			t.Fatal(err)
		}
		if foreign != 0 {
			t.Errorf("%s has %d foreign rows", tn.Slug, foreign)
		}
	}
}
