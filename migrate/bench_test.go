package migrate_test

import (
	"context"
	"embed"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"

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

// fleetSizes are the fleet sizes BenchmarkFleet runs; 10,000 takes about
// ten minutes here, so it runs outside CI: -args -fleet.sizes 100,1000,10000.
var fleetSizes = flag.String("fleet.sizes", "100,1000", "comma-separated fleet sizes for BenchmarkFleet")

// benchSetup provisions n tenants in a database of their own and brings
// them to version 1 (a table of 500 rows each). Not timed.
func benchSetup(b *testing.B, n int) (*testenv.PG, []tenant.Tenant) {
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
	tenants := make([]tenant.Tenant, n)
	parallel(b, n, func(i int) error {
		rec, err := reg.Create(context.Background(), provision.Spec{Slug: fmt.Sprintf("fleet_%05d", i)})
		tenants[i] = rec.Tenant()
		return err
	})
	first := fstest.MapFS{"00001_items.sql": {Data: mustRead(b, "testdata/bench/00001_items.sql")}}
	m := newMigrator(b, pg, first, func(c *migrate.Config) { c.Concurrency = 4 })
	if rep, err := m.UpAll(context.Background(), source(tenants)); err != nil || rep.Err() != nil {
		b.Fatal(err, rep.Err())
	}
	return pg, tenants
}

func mustRead(b *testing.B, name string) []byte {
	data, err := benchFiles.ReadFile(name)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// parallel runs f(0..n-1) on four goroutines and fails b at the first error.
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if err := f(int(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFleet measures a pass over a fleet of 100 and 1,000 tenant
// schemas (-fleet.sizes): noop when every tenant is current (Status only),
// up when each gets one migration (ADD COLUMN with a default, CREATE INDEX on
// 500 rows), at 1, 2 and 4 workers, and floor: the same migration as plain
// SQL in one round trip per tenant, what a fleet runner could at best reach.
// floor runs before up at each worker count, so neither pays for the cold
// caches the set-up leaves; noop runs last, when every tenant is current.
func BenchmarkFleet(b *testing.B) {
	for _, size := range strings.Split(*fleetSizes, ",") {
		n, err := strconv.Atoi(size)
		if err != nil {
			b.Fatalf("-fleet.sizes: %v", err)
		}
		b.Run("size="+size, func(b *testing.B) { benchFleet(b, n) })
	}
}

func benchFleet(b *testing.B, size int) {
	pg, tenants := benchSetup(b, size)
	ctx := context.Background()
	for _, workers := range []int{1, 2, 4} {
		m := newMigrator(b, pg, sub(b, benchFiles, "testdata/bench"), func(c *migrate.Config) { c.Concurrency = workers })
		reset := func(b *testing.B) { // back to version 1, untimed
			b.StopTimer()
			parallel(b, size, func(i int) error { return m.DownTo(ctx, tenants[i], 1).Err })
			b.StartTimer()
		}
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
				reset(b)
				var next atomic.Int64
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Go(func() {
						for j := next.Add(1) - 1; j < int64(size); j = next.Add(1) - 1 {
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
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "tenants/s")
			b.StopTimer()
			// The plain SQL bypassed the version summary: reread it.
			if err := m.Refresh(ctx, source(tenants)); err != nil {
				b.Fatal(err)
			}
		})
		b.Run(fmt.Sprintf("op=up/workers=%d", workers), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				reset(b)
				rep, err := m.UpAll(ctx, source(tenants))
				if err != nil || rep.Err() != nil || rep.Migrated != size {
					b.Fatalf("UpAll: %d migrated, %v, %v", rep.Migrated, err, rep.Err())
				}
				for _, r := range rep.Results {
					if r.ViaGoose {
						b.Fatalf("%s went through goose", r.Tenant.Slug)
					}
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "tenants/s")
		})
		b.Run(fmt.Sprintf("op=noop/workers=%d", workers), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				rep, err := m.UpAll(ctx, source(tenants))
				if err != nil || rep.Skipped != size {
					b.Fatalf("UpAll: %d skipped, %v", rep.Skipped, err)
				}
			}
		})
	}
}
