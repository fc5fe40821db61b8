package citustest_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

// BenchmarkCitus compares a point read and a point write through pgtenant
// on the Citus coordinator (db=citus: BEGIN, scope, SET LOCALs, statement,
// COMMIT in one round trip, routed to the worker that holds the tenant's
// schema) with pgtenant on plain PostgreSQL (db=plain), and with raw pgx on
// the coordinator as a superuser with schema-qualified SQL (db=citus-raw:
// no scope, no RLS — the cost of Citus's routing alone). Serial, two
// tenants alternating. Skipped without TENANCY_CITUS_URL.
//
//	go test -run '^$' -bench Citus -benchtime 2000x -count 6 ./internal/citustest/ | tee citus.txt
//	benchstat -col /db citus.txt
func BenchmarkCitus(b *testing.B) {
	citus := newCluster(b)
	plain := setup(b, testenv.PostgreSQL(b), false)
	for _, op := range []string{"read", "write"} {
		for _, db := range []string{"plain", "citus", "citus-raw"} {
			b.Run("op="+op+"/db="+db, func(b *testing.B) {
				c := citus
				if db == "plain" {
					c = plain
				}
				ctxs := []context.Context{tenant.NewContext(context.Background(), c.a), tenant.NewContext(context.Background(), c.b)}
				var exec func(ctx context.Context, i int) error
				if db == "citus-raw" {
					raw := c.pg.AdminPool(b)
					tables := []string{pgx.Identifier{pgtenant.SchemaName(c.a), "items"}.Sanitize(), pgx.Identifier{pgtenant.SchemaName(c.b), "items"}.Sanitize()}
					exec = func(_ context.Context, i int) error {
						if op == "read" {
							var n string
							err := raw.QueryRow(context.Background(), "SELECT name FROM "+tables[i%2]+" WHERE id = $1", 0).Scan(&n)
							return err
						}
						_, err := raw.Exec(context.Background(), "INSERT INTO "+tables[i%2]+" (tenant_id, name) VALUES ($1, 'w')", "x")
						return err
					}
				} else {
					p := c.pool(b, pgx.QueryExecModeCacheStatement)
					exec = func(ctx context.Context, i int) error {
						if op == "read" {
							var n string
							return p.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 0).Scan(&n)
						}
						_, err := p.Exec(ctx, "INSERT INTO items (name) VALUES ('w')")
						return err
					}
				}
				for i, ctx := range ctxs { // the row read, and every statement warm
					p := c.pool(b, pgx.QueryExecModeCacheStatement)
					if _, err := p.Exec(ctx, "INSERT INTO items (id, name) VALUES (0, 'zero') ON CONFLICT DO NOTHING"); err != nil {
						b.Fatal(err)
					}
					if err := exec(ctx, i); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if err := exec(ctxs[i%2], i); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCitusProvision creates tenants with one table through the
// registry on the Citus coordinator (a distributed schema) and on plain
// PostgreSQL.
//
//	go test -run '^$' -bench CitusProvision -benchtime 50x -count 6 ./internal/citustest/
func BenchmarkCitusProvision(b *testing.B) {
	for _, db := range []string{"plain", "citus"} {
		b.Run("db="+db, func(b *testing.B) {
			var pg *testenv.PG
			if db == "citus" {
				pg = testenv.Citus(b)
			} else {
				pg = testenv.PostgreSQL(b)
			}
			ctx := context.Background()
			reg, err := provision.New(ctx, provision.Config{Owner: pg.OwnerPool(b), AppRole: pg.AppRole, Builder: provision.DDL(itemsDDL), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				tn := testenv.Tenant(b, "cp")
				if _, err := reg.Create(ctx, provision.Spec{Slug: tn.Slug, ID: tn.ID}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
