package pgtenant_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// createTenants provisions n tenants the way the provision package will: a
// schema per tenant owned by the owner role, an items table with RLS enabled
// and forced, one policy with USING and WITH CHECK, grants to the app role,
// and rows named "<slug>-1" .. "<slug>-<rows>".
func createTenants(t testing.TB, pg *testenv.PG, prefix string, n, rows int) []tenant.Tenant {
	t.Helper()
	owner := pg.OwnerPool(t)
	tenants := make([]tenant.Tenant, n)
	for i := range tenants {
		tenants[i] = testenv.Tenant(t, prefix)
		createTenantSchema(t, owner, pg.AppRole, tenants[i], "name text NOT NULL", rows)
	}
	return tenants
}

// createTenantSchema creates t's schema with an items table whose name column
// is declared by nameCol.
func createTenantSchema(t testing.TB, owner *pgxpool.Pool, appRole string, tn tenant.Tenant, nameCol string, rows int) {
	t.Helper()
	ctx := context.Background()
	schema := pgx.Identifier{pgtenant.SchemaName(tn)}.Sanitize()
	items := schema + ".items"
	app := pgx.Identifier{appRole}.Sanitize()
	policy := "tenant_id = nullif(current_setting('app.tenant_id', true), '')"
	tx, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, s := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + items + " (id bigserial PRIMARY KEY, tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'), " + nameCol + ")",
		"ALTER TABLE " + items + " ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE " + items + " FORCE ROW LEVEL SECURITY",
		"CREATE POLICY tenant_isolation ON " + items + " USING (" + policy + ") WITH CHECK (" + policy + ")",
		"GRANT USAGE ON SCHEMA " + schema + " TO " + app,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + items + " TO " + app,
		"GRANT USAGE ON ALL SEQUENCES IN SCHEMA " + schema + " TO " + app,
	} {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", tn.ID); err != nil {
		t.Fatal(err)
	}
	if rows > 0 {
		if _, err := tx.Exec(ctx, "INSERT INTO "+items+" (name) SELECT $1 || '-' || g FROM generate_series(1, $2::int) g", tn.Slug, rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func newPool(t testing.TB, pg *testenv.PG, configure func(*pgtenant.Config)) *pgtenant.Pool {
	t.Helper()
	cfg := pgtenant.Config{PoolConfig: pg.AppConfig(t)}
	if configure != nil {
		configure(&cfg)
	}
	p, err := pgtenant.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func ctxFor(tn tenant.Tenant) context.Context {
	return tenant.NewContext(context.Background(), tn)
}

// names returns the item names a tenant's context sees.
func names(t testing.TB, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, ctx context.Context, sql string, args ...any) []string {
	t.Helper()
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return got
}

func want(tn tenant.Tenant, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", tn.Slug, i+1)
	}
	return out
}
