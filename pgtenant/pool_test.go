package pgtenant_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// Compile-time: the interfaces users hand a *Pool to.
var (
	_ interface {
		Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
		Query(context.Context, string, ...interface{}) (pgx.Rows, error)
		QueryRow(context.Context, string, ...interface{}) pgx.Row
		CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error)
		SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
	} = (*pgtenant.Pool)(nil) // sqlc's DBTX
	_ interface {
		Begin(context.Context) (pgx.Tx, error)
	} = (*pgtenant.Pool)(nil) // pgx.BeginFunc
	_ pgx.Tx = (*pgtenant.Tx)(nil)
)

func TestSchemaIsolation(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "iso", 3, 2)
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 2 })
	for round := range 3 { // rounds reuse connections across tenants
		for _, tn := range tenants {
			got := names(t, p, ctxFor(tn), "SELECT name FROM items ORDER BY id")
			if diff := cmp.Diff(want(tn, 2), got); diff != "" {
				t.Errorf("round %d, %s (-want +got):\n%s", round, tn.Slug, diff)
			}
		}
	}
}

func TestSchemaNameRule(t *testing.T) {
	t.Parallel()
	if got := pgtenant.SchemaName(tenant.Tenant{ID: "1", Slug: "acme"}); got != "tenant_acme" {
		t.Errorf("SchemaName = %q", got)
	}
}

func TestRLSBlocksExplicitCrossSchemaAccess(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "rls", 2, 2)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, nil)
	ctxA := ctxFor(a)
	other := pgx.Identifier{pgtenant.SchemaName(b), "items"}.Sanitize()

	if got := names(t, p, ctxA, "SELECT name FROM "+other); len(got) != 0 {
		t.Errorf("tenant A read tenant B's rows through its schema name: %v", got)
	}
	for _, stmt := range []string{
		"UPDATE " + other + " SET name = 'pwned'",
		"DELETE FROM " + other,
	} {
		ct, err := p.Exec(ctxA, stmt)
		if err != nil || ct.RowsAffected() != 0 {
			t.Errorf("%s: %d rows, %v; want 0 rows", stmt, ct.RowsAffected(), err)
		}
	}
	if diff := cmp.Diff(want(b, 2), names(t, p, ctxFor(b), "SELECT name FROM items ORDER BY id")); diff != "" {
		t.Errorf("tenant B's rows changed (-want +got):\n%s", diff)
	}
}

func TestWithCheckRejectsOtherTenantsID(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "wc", 2, 0)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, nil)
	ctxA := ctxFor(a)
	other := pgx.Identifier{pgtenant.SchemaName(b), "items"}.Sanitize()
	for _, stmt := range []string{
		"INSERT INTO items (tenant_id, name) VALUES ($1, 'smuggled')",
		"INSERT INTO " + other + " (tenant_id, name) VALUES ($1, 'smuggled')",
	} {
		_, err := p.Exec(ctxA, stmt, b.ID)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s: %v, want SQLSTATE 42501", stmt, err)
		}
	}
	// The column default fills in the tenant, so inserts need not name it.
	if _, err := p.Exec(ctxA, "INSERT INTO items (name) VALUES ('mine')"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"mine"}, names(t, p, ctxA, "SELECT name FROM items")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := names(t, p, ctxFor(b), "SELECT name FROM items"); len(got) != 0 {
		t.Errorf("tenant B sees %v", got)
	}
}

func TestNoTenantFailsBeforeIO(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	p := newPool(t, pg, nil)
	ctx := context.Background()
	before := p.Stat().AcquireCount()

	_, err := p.Exec(ctx, "SELECT 1")
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, tenant.ErrNoTenant) {
			t.Errorf("%s: %v, want tenant.ErrNoTenant", what, err)
		}
	}
	check("Exec", err)
	rows, err := p.Query(ctx, "SELECT 1")
	check("Query", err)
	check("Query rows.Err", rows.Err())
	rows.Close()
	var n int
	check("QueryRow", p.QueryRow(ctx, "SELECT 1").Scan(&n))
	_, err = p.Begin(ctx)
	check("Begin", err)
	_, err = p.BeginTx(ctx, pgx.TxOptions{})
	check("BeginTx", err)
	_, err = p.Acquire(ctx)
	check("Acquire", err)
	_, err = p.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"name"}, pgx.CopyFromRows([][]any{{"x"}}))
	check("CopyFrom", err)
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	check("SendBatch", p.SendBatch(ctx, b).Close())
	// A zero tenant stored by mistake is refused too.
	_, err = p.Exec(tenant.NewContext(ctx, tenant.Tenant{}), "SELECT 1")
	if !errors.Is(err, tenant.ErrInvalidID) {
		t.Errorf("zero tenant: %v, want ErrInvalidID", err)
	}
	if after := p.Stat().AcquireCount(); after != before {
		t.Errorf("%d connections acquired without a tenant", after-before)
	}
}

func TestPrivilegedRoleRefused(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	for _, attr := range []string{"SUPERUSER", "BYPASSRLS", "CREATEROLE", "CREATEDB", "REPLICATION"} {
		url := pg.CreateRole(t, attr)
		cfg, err := pgxpool.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
		var pe *pgtenant.PrivilegedRoleError
		if !errors.As(err, &pe) || !errors.Is(err, pgtenant.ErrPrivilegedRole) || pe.Attribute != attr || !strings.HasPrefix(pe.Role, pg.Database) {
			t.Errorf("%s: %v, want *PrivilegedRoleError naming the role and %s", attr, err, attr)
		}
		p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg, AllowPrivilegedRole: true})
		if err != nil {
			t.Errorf("%s with AllowPrivilegedRole: %v", attr, err)
		} else {
			p.Close()
		}
	}
}

// TestRoleSettingsRefused: settings that every new connection of the
// pool's role inherits (ALTER ROLE ... SET, ALTER ROLE ... IN DATABASE ...
// SET, ALTER DATABASE ... SET) and that the pool relies on make New fail
// with a *RoleSettingError naming the setting; harmless ones do not.
func TestRoleSettingsRefused(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	admin, err := pgx.Connect(context.Background(), pg.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	db := pgx.Identifier{pg.Database}.Sanitize()
	refused := []struct{ set, name string }{
		{"search_path = public", "search_path"},
		{`"app.tenant_id" = '00000000-0000-0000-0000-000000000001'`, "app.tenant_id"},
		{"default_transaction_read_only = on", "default_transaction_read_only"},
		{"standard_conforming_strings = off", "standard_conforming_strings"},
		{"statement_timeout = 1", "statement_timeout"},
		{"statement_timeout = '900ms'", "statement_timeout"},
		{"lock_timeout = '10ms'", "lock_timeout"},
		{"idle_in_transaction_session_timeout = '0.5s'", "idle_in_transaction_session_timeout"},
		{"row_security = off", "row_security"},
		{"client_encoding = 'LATIN1'", "client_encoding"},
	}
	for _, scope := range []string{"role", "role in database"} {
		for _, c := range refused {
			url := pg.CreateRole(t, "NOSUPERUSER NOBYPASSRLS")
			cfg, err := pgxpool.ParseConfig(url)
			if err != nil {
				t.Fatal(err)
			}
			alter := "ALTER ROLE " + pgx.Identifier{cfg.ConnConfig.User}.Sanitize()
			if scope == "role in database" {
				alter += " IN DATABASE " + db
			}
			if _, err := admin.Exec(context.Background(), alter+" SET "+c.set); err != nil {
				t.Fatal(err)
			}
			for _, allow := range []bool{false, true} {
				p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg, AllowPrivilegedRole: allow})
				var re *pgtenant.RoleSettingError
				if !errors.As(err, &re) || !errors.Is(err, pgtenant.ErrRoleSetting) || re.Name != c.name || re.Scope != scope || re.Role != cfg.ConnConfig.User || !strings.Contains(err.Error(), c.name) {
					t.Errorf("%s setting %s (allow %v): %v, want *RoleSettingError naming %s", scope, c.set, allow, err, c.name)
				}
				if err == nil {
					p.Close()
				}
			}
		}
	}
	// Settings that change nothing the pool relies on are accepted.
	url := pg.CreateRole(t, "NOSUPERUSER NOBYPASSRLS")
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []string{"statement_timeout = '30s'", "lock_timeout = 0", "work_mem = '8MB'", "default_transaction_read_only = off", "client_encoding = 'UTF8'"} {
		if _, err := admin.Exec(context.Background(), "ALTER ROLE "+pgx.Identifier{cfg.ConnConfig.User}.Sanitize()+" SET "+set); err != nil {
			t.Fatal(err)
		}
	}
	p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		t.Fatalf("harmless role settings: %v", err)
	}
	defer p.Close()
	tn, err := tenant.New("11111111-1111-1111-1111-111111111111", "acme")
	if err != nil {
		t.Fatal(err)
	}
	ctx := tenant.NewContext(context.Background(), tn)
	var n int
	if err := p.Unscoped().QueryRow(context.Background(), "SELECT 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	// A setting planted after New, by any client, reaches no statement:
	// every new connection checks what it started with.
	if _, err := admin.Exec(context.Background(), "ALTER ROLE "+pgx.Identifier{cfg.ConnConfig.User}.Sanitize()+" SET search_path = public"); err != nil {
		t.Fatal(err)
	}
	p.Unscoped().Reset()
	_, err = p.Unscoped().Exec(context.Background(), "SELECT 1")
	var re *pgtenant.RoleSettingError
	if !errors.As(err, &re) || re.Name != "search_path" {
		t.Errorf("Unscoped after a planted search_path: %v, want *RoleSettingError", err)
	}
	if _, err := p.Exec(ctx, "SELECT 1"); !errors.Is(err, pgtenant.ErrRoleSetting) {
		t.Errorf("scoped statement after a planted search_path: %v, want ErrRoleSetting", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tests := map[string]struct {
		cfg  pgtenant.Config
		want string
	}{
		"no pool config": {pgtenant.Config{}, "PoolConfig"},
		"bad setting":    {pgtenant.Config{PoolConfig: pg.AppConfig(t), Setting: "tenant_id"}, "Setting"},
		"bad mode":       {pgtenant.Config{PoolConfig: pg.AppConfig(t), Mode: 7}, "Mode"},
		"bad capacity":   {pgtenant.Config{PoolConfig: pg.AppConfig(t), StatementCacheCapacity: -1}, "StatementCacheCapacity"},
		"bad schema":     {pgtenant.Config{PoolConfig: pg.AppConfig(t), SharedSchemas: []string{""}}, "SharedSchemas"},
	}
	for name, tc := range tests {
		_, err := pgtenant.New(context.Background(), tc.cfg)
		if !errors.Is(err, pgtenant.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig naming %s", name, err, tc.want)
		}
	}
}

func TestSearchPathAndSettingPerStatement(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "sp", 1, 0)
	p := newPool(t, pg, func(c *pgtenant.Config) { c.SharedSchemas = []string{"public", "ext"} })
	var path, setting string
	if err := p.QueryRow(ctxFor(tenants[0]), "SELECT current_setting('search_path'), current_setting('app.tenant_id')").Scan(&path, &setting); err != nil {
		t.Fatal(err)
	}
	wantPath := `"` + pgtenant.SchemaName(tenants[0]) + `", "public", "ext", pg_temp`
	if path != wantPath || setting != tenants[0].ID {
		t.Errorf("search_path %q, setting %q; want %q, %q", path, setting, wantPath, tenants[0].ID)
	}
	// Nothing survives the statement: unscoped, the same pool sees defaults.
	if err := p.Unscoped().QueryRow(context.Background(), "SELECT current_setting('search_path'), coalesce(current_setting('app.tenant_id', true), '')").Scan(&path, &setting); err != nil {
		t.Fatal(err)
	}
	if path != `"$user", public` || setting != "" {
		t.Errorf("after the statement: search_path %q, setting %q", path, setting)
	}
}

// TestRoleResetOnlyWhereARoleCanBeSet: the scope statement resets the role
// for the transaction only when the pool's role could SET ROLE at all, that
// is, when it is a member of another role; an app role set up as the docs
// say (a member of nothing) gets the shorter statement.
func TestRoleResetOnlyWhereARoleCanBeSet(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "roles", 1, 1)[0]
	member := pg.CreateRole(t, "")
	other := pg.CreateRole(t, "")
	memberCfg, err := pgxpool.ParseConfig(member)
	if err != nil {
		t.Fatal(err)
	}
	otherCfg, err := pgxpool.ParseConfig(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.AdminPool(t).Exec(context.Background(), "GRANT "+pgx.Identifier{otherCfg.ConnConfig.User}.Sanitize()+" TO "+pgx.Identifier{memberCfg.ConnConfig.User}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	// A role of its own, not the package's app role: a test running in
	// parallel makes that one a member of a role for a while.
	alone, err := pgxpool.ParseConfig(pg.CreateRole(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		cfg      *pgxpool.Config
		wantRole bool
	}{{"a role that is a member of nothing", alone, false}, {"a member of another role", memberCfg, true}} {
		p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: c.cfg})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := p.Acquire(ctxFor(tn))
		if err != nil {
			t.Fatal(err)
		}
		var scopeSQL string
		err = conn.QueryRow(context.Background(), "SELECT statement FROM pg_catalog.pg_prepared_statements WHERE name = 'tenancy_scope'").Scan(&scopeSQL)
		conn.Release()
		p.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := strings.Contains(scopeSQL, "'role'"); got != c.wantRole {
			t.Errorf("%s: scope statement %q; resets the role: %v, want %v", c.name, scopeSQL, got, c.wantRole)
		}
	}
}
