package migrate_test

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/migrate"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

//go:embed testdata/bench/*.sql
var benchFiles embed.FS

const benchFleet = 1000

// benchSetup provisions 1,000 tenants in a database of their own and brings
// them to version 1 (a table of 500 rows each). Not timed.
func benchSetup(b *testing.B) (*testenv.PG, []tenant.Tenant) {
	b.Helper()
	pg := testenv.PostgreSQL(b).NewDatabase(b)
	owner, err := pgxpool.New(context.Background(), pg.OwnerURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(owner.Close)
	reg, err := provision.New(context.Background(), provision.Config{Owner: owner, AppRole: pg.AppRole, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	tenants := make([]tenant.Tenant, benchFleet)
	for i := range tenants {
		rec, err := reg.Create(context.Background(), provision.Spec{Slug: fmt.Sprintf("fleet_%04d", i)})
		if err != nil {
			b.Fatal(err)
		}
		tenants[i] = rec.Tenant()
	}
	m := newMigrator(b, pg, sub(b, benchFiles, "testdata/bench"), func(c *migrate.Config) { c.Concurrency = 2 })
	for _, t := range tenants {
		if r := m.UpTo(context.Background(), t, 1); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	return pg, tenants
}

// BenchmarkFleet measures a pass over 1,000 tenant schemas: noop when every
// tenant is current (Status only), up when each gets one migration (ADD
// COLUMN with a default, CREATE INDEX on 500 rows), at 1, 2 and 4 workers,
// and floor: the same migration as plain SQL in one round trip per tenant,
// what a fleet runner could at best reach.
func BenchmarkFleet(b *testing.B) {
	pg, tenants := benchSetup(b)
	ctx := context.Background()
	for _, workers := range []int{1, 2, 4} {
		m := newMigrator(b, pg, sub(b, benchFiles, "testdata/bench"), func(c *migrate.Config) { c.Concurrency = workers })
		b.Run(fmt.Sprintf("op=up/workers=%d", workers), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for _, t := range tenants { // back to version 1, untimed
					if r := m.DownTo(ctx, t, 1); r.Err != nil {
						b.Fatal(r.Err)
					}
				}
				b.StartTimer()
				rep, err := m.UpAll(ctx, source(tenants))
				if err != nil || rep.Err() != nil || rep.Migrated != benchFleet {
					b.Fatalf("UpAll: %d migrated, %v, %v", rep.Migrated, err, rep.Err())
				}
			}
			b.ReportMetric(float64(b.N*benchFleet)/b.Elapsed().Seconds(), "tenants/s")
		})
		b.Run(fmt.Sprintf("op=noop/workers=%d", workers), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				rep, err := m.UpAll(ctx, source(tenants))
				if err != nil || rep.Skipped != benchFleet {
					b.Fatalf("UpAll: %d skipped, %v", rep.Skipped, err)
				}
			}
		})
		// The floor: the same migration as plain SQL, one durable transaction
		// and one round trip per tenant on a connection per worker, with
		// goose's version row — no locks, no securing step, no status read.
		b.Run(fmt.Sprintf("op=floor/workers=%d", workers), func(b *testing.B) {
			conns := make([]*pgx.Conn, workers)
			for w := range conns {
				c, err := pgx.Connect(ctx, pg.OwnerURL)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close(ctx)
				conns[w] = c
			}
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for _, t := range tenants {
					if r := m.DownTo(ctx, t, 1); r.Err != nil {
						b.Fatal(r.Err)
					}
				}
				b.StartTimer()
				var next atomic.Int64
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Go(func() {
						for j := next.Add(1) - 1; j < benchFleet; j = next.Add(1) - 1 {
							s := pgx.Identifier{pgtenant.SchemaName(tenants[j])}.Sanitize()
							sql := "BEGIN; SET LOCAL search_path = " + s + "; " +
								"ALTER TABLE items ADD COLUMN note text NOT NULL DEFAULT ''; CREATE INDEX items_qty ON items (qty); " +
								"INSERT INTO " + s + ".goose_db_version (version_id, is_applied) VALUES (2, true); COMMIT"
							if _, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.N*benchFleet)/b.Elapsed().Seconds(), "tenants/s")
			b.StopTimer()
			// The plain SQL bypassed the version summary: reread it.
			if err := m.Refresh(ctx, source(tenants)); err != nil {
				b.Fatal(err)
			}
		})
	}
}
