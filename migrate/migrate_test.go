package migrate_test

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/migrate"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

func TestMain(m *testing.M) { testenv.Main(m) }

//go:embed testdata/tenant/*.sql
var tenantFiles embed.FS

//go:embed testdata/shared/*.sql
var sharedFiles embed.FS

func sub(t testing.TB, f fs.FS, dir string) fs.FS {
	t.Helper()
	s, err := fs.Sub(f, dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fleet provisions n empty tenant schemas and returns them.
func fleet(t testing.TB, pg *testenv.PG, prefix string, n int) []tenant.Tenant {
	t.Helper()
	owner, err := pgxpool.New(context.Background(), pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	reg, err := provision.New(context.Background(), provision.Config{Owner: owner, AppRole: pg.AppRole, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var out []tenant.Tenant
	for range n {
		rec, err := reg.Create(context.Background(), provision.Spec{Slug: testenv.NewTenant(prefix).Slug})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec.Tenant())
	}
	return out
}

// source lists ts as a TenantSource.
func source(ts []tenant.Tenant) migrate.TenantSource {
	return migrate.TenantSourceFunc(func(context.Context) ([]tenant.Tenant, error) { return ts, nil })
}

func newMigrator(t testing.TB, pg *testenv.PG, chain fs.FS, configure func(*migrate.Config)) *migrate.Migrator {
	t.Helper()
	cc, err := pgx.ParseConfig(pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := migrate.Config{
		ConnConfig: cc, Tenant: chain, AppRole: pg.AppRole,
		Logger: slog.New(slog.DiscardHandler),
	}
	if configure != nil {
		configure(&cfg)
	}
	m, err := migrate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func appPool(t testing.TB, pg *testenv.PG) *pgtenant.Pool {
	t.Helper()
	p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: pg.AppConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func ctxFor(t tenant.Tenant) context.Context { return tenant.NewContext(context.Background(), t) }

func TestSharedAndTenantChains(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "chain", 3)
	m := newMigrator(t, pg, sub(t, tenantFiles, "testdata/tenant"), func(c *migrate.Config) {
		c.Shared = sub(t, sharedFiles, "testdata/shared")
	})
	ctx := context.Background()
	if _, err := m.UpShared(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pg.OwnerPool(t).QueryRow(ctx, "SELECT count(*) FROM public.migrate_test_plans").Scan(&n); err != nil {
		t.Fatalf("shared chain: %v", err)
	}
	var progress []int
	rep, err := m.UpAll(ctx, source(tenants))
	if err != nil || rep.Err() != nil {
		t.Fatalf("UpAll: %v, %v", err, rep.Err())
	}
	if rep.Migrated != 3 || rep.Failed != 0 {
		t.Errorf("report %+v", rep)
	}
	for _, r := range rep.Results {
		if r.From != 0 || r.To != 4 || r.Applied != 4 {
			t.Errorf("%s: %d → %d, %d applied", r.Tenant.Slug, r.From, r.To, r.Applied)
		}
	}
	_ = progress
	statuses, err := m.Status(ctx, source(tenants))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range statuses {
		if s.Current != 4 || s.Latest != 4 || s.Pending != 0 {
			t.Errorf("status %+v", s)
		}
	}
	// A second pass has nothing to do.
	rep, err = m.UpAll(ctx, source(tenants))
	if err != nil || rep.Skipped != 3 || rep.Migrated != 0 {
		t.Errorf("second UpAll: %+v, %v", rep, err)
	}
	// The NO TRANSACTION index landed in every tenant's own schema.
	for _, tn := range tenants {
		var ok bool
		if err := pg.OwnerPool(t).QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = 'events_at')", pgtenant.SchemaName(tn)).Scan(&ok); err != nil || !ok {
			t.Errorf("%s: events_at index missing (%v)", tn.Slug, err)
		}
	}
	// The table a migration created is confined like a provisioned one.
	pool := appPool(t, pg)
	for _, tn := range tenants {
		if _, err := pool.Exec(ctxFor(tn), "INSERT INTO events (body) VALUES ($1)", tn.Slug); err != nil {
			t.Fatal(err)
		}
	}
	for i, tn := range tenants {
		rows, _ := pool.Query(ctxFor(tn), "SELECT body FROM events")
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || !cmp.Equal(got, []string{tn.Slug}) {
			t.Errorf("%s sees %v (%v)", tn.Slug, got, err)
		}
		other := tenants[(i+1)%len(tenants)]
		var n int
		if err := pool.QueryRow(ctxFor(tn), "SELECT count(*) FROM "+pgx.Identifier{pgtenant.SchemaName(other), "events"}.Sanitize()).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s reads %d of %s's events (%v)", tn.Slug, n, other.Slug, err)
		}
	}
}

func badChain() fstest.MapFS {
	return fstest.MapFS{
		"00001_items.sql":    {Data: []byte("-- +goose Up\nCREATE TABLE items (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, qty int NOT NULL);\n")},
		"00002_positive.sql": {Data: []byte("-- +goose Up\nALTER TABLE items ADD CONSTRAINT qty_positive CHECK (qty > 0);\n")},
		"00003_more.sql":     {Data: []byte("-- +goose Up\nALTER TABLE items ADD COLUMN extra int;\n")},
	}
}

func TestFailureIsolationAndRerun(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "fail", 4)
	chain := badChain()
	m := newMigrator(t, pg, chain, nil)
	ctx := context.Background()
	bad := tenants[2]
	// Version 1 everywhere, then a row that version 2's constraint rejects.
	for _, tn := range tenants {
		if r := m.UpTo(ctx, tn, 1); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	pool := appPool(t, pg)
	if _, err := pool.Exec(ctxFor(bad), "INSERT INTO items (qty) VALUES (-1)"); err != nil {
		t.Fatal(err)
	}
	rep, err := m.UpAll(ctx, source(tenants))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Migrated != 3 || rep.Failed != 1 {
		t.Fatalf("report: %d migrated, %d failed", rep.Migrated, rep.Failed)
	}
	var me *migrate.MigrationError
	if err := rep.Err(); !errors.As(err, &me) || me.Tenant != bad || me.Version != 2 || !strings.Contains(err.Error(), "qty_positive") {
		t.Errorf("report error: %v", err)
	}
	statuses, _ := m.Status(ctx, source(tenants))
	for _, s := range statuses {
		want := int64(3)
		if s.Tenant == bad {
			want = 1
		}
		if s.Current != want {
			t.Errorf("%s at version %d, want %d", s.Tenant.Slug, s.Current, want)
		}
	}
	// Fix the data; a rerun completes the failed tenant.
	if _, err := pool.Exec(ctxFor(bad), "UPDATE items SET qty = 1"); err != nil {
		t.Fatal(err)
	}
	rep, err = m.UpAll(ctx, source(tenants))
	if err != nil || rep.Err() != nil || rep.Migrated != 1 || rep.Skipped != 3 {
		t.Errorf("rerun: %+v, %v, %v", rep, err, rep.Err())
	}
}

func TestConcurrentUpAllAppliesOnce(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	upAllTwiceAtOnce(t, pg, sub(t, tenantFiles, "testdata/tenant"), fleet(t, pg, "conc", 6), 4)
}

// upAllTwiceAtOnce runs two UpAll passes of chain (with Migrators of their
// own, three workers each) over tenants at once, and checks that each of the
// chain's versions was recorded exactly once in every schema.
func upAllTwiceAtOnce(t *testing.T, pg *testenv.PG, chain fs.FS, tenants []tenant.Tenant, versions int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		m := newMigrator(t, pg, chain, func(c *migrate.Config) { c.Concurrency = 3 })
		wg.Go(func() {
			rep, err := m.UpAll(context.Background(), source(tenants))
			if err == nil {
				err = rep.Err()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, tn := range tenants {
		var rows, distinct int
		err := pg.OwnerPool(t).QueryRow(context.Background(), "SELECT count(*), count(DISTINCT version_id) FROM "+
			pgx.Identifier{pgtenant.SchemaName(tn), "goose_db_version"}.Sanitize()+" WHERE version_id > 0").Scan(&rows, &distinct)
		if err != nil || rows != versions || distinct != versions {
			t.Errorf("%s: %d version rows, %d distinct (%v); want each of %d applied once", tn.Slug, rows, distinct, err, versions)
		}
	}
}

// waitForQuery waits until another session runs a query containing
// fragment.
func waitForQuery(t *testing.T, pg *testenv.PG, fragment string) {
	t.Helper()
	admin := pg.AdminPool(t)
	for i := 0; ; i++ {
		var n int
		if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", fragment).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if i > 200 {
			t.Fatalf("no session ran %q", fragment)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCancelMidFleet(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "cancel", 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newMigrator(t, pg, sub(t, tenantFiles, "testdata/tenant"), func(c *migrate.Config) {
		c.Concurrency = 1
		c.Progress = func(p migrate.Progress) {
			if p.Done == 3 {
				cancel()
			}
		}
	})
	rep, err := m.UpAll(ctx, source(tenants))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("UpAll: %v, want context.Canceled", err)
	}
	if rep.Migrated < 3 || rep.Migrated+rep.Failed >= len(tenants) {
		t.Errorf("report after cancel: %d migrated, %d failed of %d", rep.Migrated, rep.Failed, len(tenants))
	}
	m2 := newMigrator(t, pg, sub(t, tenantFiles, "testdata/tenant"), nil)
	rep, err = m2.UpAll(context.Background(), source(tenants))
	if err != nil || rep.Err() != nil {
		t.Fatalf("rerun: %v, %v", err, rep.Err())
	}
	statuses, _ := m2.Status(context.Background(), source(tenants))
	for _, s := range statuses {
		if s.Pending != 0 {
			t.Errorf("%s still has %d pending", s.Tenant.Slug, s.Pending)
		}
	}
}

func TestStatusMixedFleet(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "mixed", 4)
	m := newMigrator(t, pg, sub(t, tenantFiles, "testdata/tenant"), nil)
	ctx := context.Background()
	for i, v := range []int64{0, 1, 3, 4} {
		if v > 0 {
			if r := m.UpTo(ctx, tenants[i], v); r.Err != nil || r.To != v {
				t.Fatalf("UpTo %d: %+v", v, r)
			}
		}
	}
	statuses, err := m.Status(ctx, source(tenants))
	if err != nil {
		t.Fatal(err)
	}
	var got []migrate.TenantStatus
	got = append(got, statuses...)
	want := []migrate.TenantStatus{
		{Tenant: tenants[0], Current: 0, Latest: 4, Pending: 4},
		{Tenant: tenants[1], Current: 1, Latest: 4, Pending: 3},
		{Tenant: tenants[2], Current: 3, Latest: 4, Pending: 1},
		{Tenant: tenants[3], Current: 4, Latest: 4, Pending: 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if r := m.DownTo(ctx, tenants[3], 2); r.Err != nil || r.To != 2 {
		t.Errorf("DownTo: %+v", r)
	}
}

func TestNewTableWithoutTenantColumn(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "notenant", 1)
	chain := fstest.MapFS{
		"00001_ok.sql":  {Data: []byte("-- +goose Up\nCREATE TABLE ok_table (tenant_id text NOT NULL, v int);\n")},
		"00002_bad.sql": {Data: []byte("-- +goose Up\nCREATE TABLE leaky (v int);\n")},
	}
	m := newMigrator(t, pg, chain, nil)
	r := m.UpTenant(context.Background(), tenants[0])
	if r.Err == nil || !strings.Contains(r.Err.Error(), "leaky") || !strings.Contains(r.Err.Error(), "tenant_id") {
		t.Fatalf("UpTenant: %v, want an error naming the table", r.Err)
	}
	pool := appPool(t, pg)
	if _, err := pool.Exec(ctxFor(tenants[0]), "SELECT * FROM leaky"); err == nil {
		t.Error("the app role can read a table without tenant_id")
	}
	if _, err := pool.Exec(ctxFor(tenants[0]), "SELECT * FROM ok_table"); err != nil {
		t.Errorf("ok_table: %v", err)
	}
}

func TestStopOnError(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "stop", 4)
	m := newMigrator(t, pg, badChain(), func(c *migrate.Config) { c.Concurrency = 1; c.StopOnError = true })
	ctx := context.Background()
	for _, tn := range tenants {
		if r := m.UpTo(ctx, tn, 1); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if _, err := appPool(t, pg).Exec(ctxFor(tenants[0]), "INSERT INTO items (qty) VALUES (-1)"); err != nil {
		t.Fatal(err)
	}
	rep, err := m.UpAll(ctx, source(tenants))
	if err != nil {
		t.Fatalf("UpAll: %v (a tenant failure is in the report, not the error)", err)
	}
	if rep.Failed != 1 || rep.Migrated != 0 {
		t.Errorf("StopOnError: %d failed, %d migrated; want the first failure to stop the fleet", rep.Failed, rep.Migrated)
	}
}
