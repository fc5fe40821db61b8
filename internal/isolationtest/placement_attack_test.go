package isolationtest_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

// TestAttackMatrixAcrossPlacements places tenant A in a silo on the second
// server, B in the registry's own database (bridge) and C in a pool, all
// reached through one pgtenant.Router, and runs the attack statements on
// A's table, named fully, as each of them: only A reaches its rows; B and C
// are sent to their own databases, where A's schema does not exist.
func TestAttackMatrixAcrossPlacements(t *testing.T) {
	ctx := context.Background()
	main := testenv.PostgreSQL(t)
	home, shared := main.NewDatabase(t), main.NewDatabase(t)
	silo := testenv.SecondPostgreSQL(t).NewDatabase(t)
	owner := func(pg *testenv.PG) *pgxpool.Pool {
		p, err := pgxpool.New(ctx, pg.OwnerURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	sharedOwner := owner(shared)
	if _, err := sharedOwner.Exec(ctx, `CREATE TABLE public.docs (id int, tenant_id text NOT NULL, body text NOT NULL, PRIMARY KEY (tenant_id, id))`); err != nil {
		t.Fatal(err)
	}
	reg, err := provision.New(ctx, provision.Config{Owner: owner(home), AppRole: home.AppRole, Logger: slog.New(slog.DiscardHandler),
		Builder: provision.DDL(`CREATE TABLE docs (id int, tenant_id text NOT NULL, body text NOT NULL, PRIMARY KEY (tenant_id, id))`),
		Placements: []provision.Placement{
			{Name: "silo", Kind: provision.Silo, Owner: owner(silo), AppRole: silo.AppRole},
			{Name: "shared", Kind: provision.Pool, Owner: sharedOwner, SharedTables: []string{"public.docs"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	pools := map[string]*pgtenant.Pool{}
	for name, c := range map[string]struct {
		pg   *testenv.PG
		mode pgtenant.Mode
	}{"default": {home, pgtenant.SchemaPerTenant}, "silo": {silo, pgtenant.SchemaPerTenant}, "shared": {shared, pgtenant.SharedTables}} {
		p, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: c.pg.AppConfig(t), Mode: c.mode})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		pools[name] = p
	}
	router, err := pgtenant.NewRouter(pgtenant.RouterConfig{Placements: pools, Locator: reg})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(prefix, placement string, bodies ...string) provision.Record {
		rec, err := reg.Create(ctx, provision.Spec{Slug: testenv.NewTenant(prefix).Slug, Placement: placement})
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range bodies {
			if _, err := router.Exec(ctxOf(rec), "INSERT INTO docs (id, body) VALUES ($1, $2)", i+1, b); err != nil {
				t.Fatal(err)
			}
		}
		return rec
	}
	a := mk("xp_a", "silo", "a1", "a2")
	b := mk("xp_b", "default", "b1")
	c := mk("xp_c", "shared", "c1")
	target := pgx.Identifier{a.SchemaName, "docs"}.Sanitize()
	statements := map[string]string{
		"SELECT": "SELECT body FROM " + target,
		"INSERT": "INSERT INTO " + target + " (id, tenant_id, body) VALUES (10, '" + a.ID + "', 'x')",
		"UPDATE": "UPDATE " + target + " SET body = 'pwned'",
		"DELETE": "DELETE FROM " + target,
	}
	got := map[string]map[string]string{}
	for who, rec := range map[string]provision.Record{"A (silo)": a, "B (bridge)": b, "C (pool)": c} {
		got[who] = map[string]string{}
		for kind, sql := range statements {
			tx, err := router.Begin(ctxOf(rec))
			if err != nil {
				t.Fatal(err)
			}
			rows, _ := tx.Query(ctx, sql)
			bodies, err := pgx.CollectRows(rows, pgx.RowTo[string])
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr):
				got[who][kind] = "error " + pgErr.Code
			case err != nil:
				got[who][kind] = err.Error()
			default:
				got[who][kind] = strings.Join(bodies, ",") + " " + rows.CommandTag().String()
			}
			_ = tx.Rollback(ctx)
		}
	}
	want := map[string]map[string]string{
		"A (silo)":   {"SELECT": "a1,a2 SELECT 2", "INSERT": " INSERT 0 1", "UPDATE": " UPDATE 2", "DELETE": " DELETE 2"},
		"B (bridge)": {"SELECT": "error 42P01", "INSERT": "error 42P01", "UPDATE": "error 42P01", "DELETE": "error 42P01"},
		"C (pool)":   {"SELECT": "error 42P01", "INSERT": "error 42P01", "UPDATE": "error 42P01", "DELETE": "error 42P01"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attack matrix across placements (-want +got):\n%s", diff)
	}
	// Each sees exactly its own rows through the router.
	for rec, want := range map[*provision.Record][]string{&a: {"a1", "a2"}, &b: {"b1"}, &c: {"c1"}} {
		rows, _ := router.Query(ctxOf(*rec), "SELECT body FROM docs ORDER BY id")
		bodies, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || !cmp.Equal(bodies, want) {
			t.Errorf("%s sees %v (%v), want %v", rec.Slug, bodies, err, want)
		}
	}
	// Hostile IDs smuggled into a context never reach the Locator or SQL.
	for _, id := range []string{"a:b", "a*", "a\x00", "", strings.Repeat("x", 65)} {
		if _, err := router.Exec(tenant.NewContext(ctx, tenant.Tenant{ID: id, Slug: "acme"}), "SELECT 1"); !errors.Is(err, tenant.ErrInvalidID) {
			t.Errorf("context with ID %q: %v", id, err)
		}
	}
	if _, err := router.Exec(ctx, "SELECT 1"); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("no tenant: %v", err)
	}
	// A tenant the registry does not know is a typed error, on no database.
	ghost := tenant.Tenant{ID: "ghost-1", Slug: "ghost"}
	var pe *pgtenant.PlacementError
	if _, err := router.Exec(tenant.NewContext(ctx, ghost), "SELECT 1"); !errors.As(err, &pe) || !errors.Is(err, provision.ErrTenantNotFound) {
		t.Errorf("unknown tenant: %v", err)
	}
}
