package migrate_test

import (
	"context"
	"log/slog"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/migrate"
	"github.com/tenancykit/tenancy/provision"
)

// TestPlacementsUpAll spreads a fleet over the registry's database and a
// silo on the second server, each with its migrator as the schema builder,
// then adds a migration: Placements.UpAll brings the tenants of both
// databases to it, and Status names each tenant's placement.
func TestPlacementsUpAll(t *testing.T) {
	ctx := context.Background()
	home, silo := testenv.PostgreSQL(t).NewDatabase(t), testenv.SecondPostgreSQL(t).NewDatabase(t)
	v1 := fstest.MapFS{"00001_items.sql": {Data: []byte("-- +goose Up\nCREATE TABLE items (id int PRIMARY KEY, tenant_id text NOT NULL);\n")}}
	v2 := fstest.MapFS{"00001_items.sql": v1["00001_items.sql"],
		"00002_note.sql": {Data: []byte("-- +goose Up\nALTER TABLE items ADD COLUMN note text;\n")}}
	owner := func(pg *testenv.PG) *pgxpool.Pool {
		p, err := pgxpool.New(ctx, pg.OwnerURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	homeOwner, siloOwner := owner(home), owner(silo)
	reg, err := provision.New(ctx, provision.Config{Owner: homeOwner, AppRole: home.AppRole, Logger: slog.New(slog.DiscardHandler),
		SchemaBuilder: newMigrator(t, home, v1, nil),
		Placements: []provision.Placement{{Name: "silo", Kind: provision.Silo, Owner: siloOwner, AppRole: silo.AppRole,
			SchemaBuilder: newMigrator(t, silo, v1, nil)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"default", "default", "silo"} {
		if _, err := reg.Create(ctx, provision.Spec{Slug: testenv.NewTenant("pl").Slug, Placement: p}); err != nil {
			t.Fatal(err)
		}
	}
	var fleet migrate.Placements
	for _, p := range reg.Placements() {
		pg := map[string]*testenv.PG{"default": home, "silo": silo}[p.Name]
		fleet = append(fleet, migrate.Placement{Name: p.Name, Migrator: newMigrator(t, pg, v2, nil), Tenants: p.Registry})
	}
	st, err := fleet.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, s := range st {
		if s.Current != 1 || s.Pending != 1 {
			t.Errorf("%s in %s before UpAll: %+v", s.Tenant.Slug, s.Placement, s.TenantStatus)
		}
		count[s.Placement]++
	}
	if count["default"] != 2 || count["silo"] != 1 {
		t.Errorf("status per placement: %v, want 2 default, 1 silo", count)
	}
	rep, err := fleet.UpAll(ctx)
	if err != nil || rep.Err() != nil {
		t.Fatalf("UpAll: %v, %v", err, rep.Err())
	}
	if len(rep.Placements) != 2 || rep.Placements[0].Migrated != 2 || rep.Placements[1].Migrated != 1 {
		t.Errorf("report: %+v", rep.Placements)
	}
	st, err = fleet.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Current != 2 || s.Pending != 0 {
			t.Errorf("%s in %s after UpAll: %+v", s.Tenant.Slug, s.Placement, s.TenantStatus)
		}
	}
	if f, err := reg.Audit(ctx); err != nil || len(f) != 0 {
		t.Errorf("Audit: %v %v", f, err)
	}
}
