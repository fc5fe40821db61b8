package migrate_test

import (
	"context"
	"errors"
	"log/slog"
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

// TestProvisionStartsAtLatest creates tenants through provision with the
// migrator as its SchemaBuilder: each new tenant is at the chain's latest
// version, its tables confined; a chain that fails leaves nothing behind.
func TestProvisionStartsAtLatest(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	owner, err := pgxpool.New(context.Background(), pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	var created []tenant.Tenant
	newReg := func(m *migrate.Migrator) *provision.Registry {
		reg, err := provision.New(context.Background(), provision.Config{Owner: owner, AppRole: pg.AppRole, SchemaBuilder: m, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return reg
	}
	m := newMigrator(t, pg, sub(t, tenantFiles, "testdata/tenant"), nil)
	reg := newReg(m)
	ctx := context.Background()
	for range 2 {
		rec, err := reg.Create(ctx, provision.Spec{Slug: testenv.NewTenant("fresh").Slug})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Status != provision.StatusActive {
			t.Errorf("status %s", rec.Status)
		}
		created = append(created, rec.Tenant())
	}
	statuses, err := m.Status(ctx, source(created))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range statuses {
		if s.Current != m.Latest() || s.Pending != 0 {
			t.Errorf("new tenant %s at %d of %d", s.Tenant.Slug, s.Current, m.Latest())
		}
	}
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: pg.AppConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a, b := created[0], created[1]
	if _, err := pool.Exec(ctxFor(a), "INSERT INTO items (qty) VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctxFor(b), "SELECT count(*) FROM "+pgx.Identifier{pgtenant.SchemaName(a), "items"}.Sanitize()).Scan(&n); err != nil || n != 0 {
		t.Errorf("B reads %d of A's items (%v)", n, err)
	}

	// A chain that fails: Create fails and removes what it made.
	broken := newMigrator(t, pg, fstest.MapFS{
		"00001_ok.sql":  {Data: []byte("-- +goose Up\nCREATE TABLE ok (tenant_id text NOT NULL);\n")},
		"00002_bad.sql": {Data: []byte("-- +goose Up\nCREATE TABLE bad (tenant_id text, x nosuchtype);\n")},
	}, nil)
	s := testenv.NewTenant("broken").Slug
	_, err = newReg(broken).Create(ctx, provision.Spec{Slug: s})
	var se *provision.StepError
	var me *migrate.MigrationError
	if !errors.As(err, &se) || se.Step != "build schema" || !errors.As(err, &me) || me.Version != 2 {
		t.Fatalf("Create with a failing chain: %v", err)
	}
	if _, err := reg.Get(ctx, s); !errors.Is(err, provision.ErrTenantNotFound) {
		t.Errorf("registry row left: %v", err)
	}
	var exists bool
	if err := owner.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", "tenant_"+s).Scan(&exists); err != nil || exists {
		t.Errorf("schema left behind (%v)", err)
	}
}

// TestRecreatedSchemaIsReadAfresh deletes a migrated tenant and creates one
// with the same slug: the version summary must not carry the old schema's
// version over to the new, empty one.
func TestRecreatedSchemaIsReadAfresh(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	owner, err := pgxpool.New(context.Background(), pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	reg, err := provision.New(context.Background(), provision.Config{Owner: owner, AppRole: pg.AppRole, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	slug := testenv.NewTenant("again").Slug
	rec, err := reg.Create(ctx, provision.Spec{Slug: slug})
	if err != nil {
		t.Fatal(err)
	}
	current := []tenant.Tenant{rec.Tenant()}
	m := newMigrator(t, pg, sub(t, tenantFiles, "testdata/tenant"), nil)
	if rep, err := m.UpAll(ctx, source(current)); err != nil || rep.Migrated != 1 {
		t.Fatalf("UpAll: %+v, %v", rep, err)
	}
	if err := reg.Delete(ctx, slug); err != nil {
		t.Fatal(err)
	}
	rec, err = reg.Create(ctx, provision.Spec{Slug: slug})
	if err != nil {
		t.Fatal(err)
	}
	current = []tenant.Tenant{rec.Tenant()}
	statuses, err := m.Status(ctx, source(current))
	if err != nil {
		t.Fatal(err)
	}
	if len(statuses) != 1 || statuses[0].Current != 0 || statuses[0].Pending != 4 {
		t.Errorf("recreated schema: %+v, want version 0 with 4 pending", statuses)
	}
	if rep, err := m.UpAll(ctx, source(current)); err != nil || rep.Migrated != 1 {
		t.Errorf("UpAll of the recreated tenant: %+v, %v", rep, err)
	}
}
