package provision_test

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/provision"
)

func TestAudit(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t).NewDatabase(t) // a database of its own: Audit sees everything in it
	reg := newRegistry(t, pg, nil)
	ctx := context.Background()
	var recs []provision.Record
	for _, s := range []string{"audit_a", "audit_b", "audit_c"} {
		rec, err := reg.Create(ctx, provision.Spec{Slug: s})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	findings, err := reg.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 0 {
		t.Fatalf("a clean database has findings: %v", findings)
	}

	admin, err := pgxpool.New(ctx, pg.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	a, b, c := recs[0].SchemaName, recs[1].SchemaName, recs[2].SchemaName
	app := pgx.Identifier{pg.AppRole}.Sanitize()
	for _, s := range []string{
		"ALTER TABLE " + a + ".projects DISABLE ROW LEVEL SECURITY",
		"ALTER TABLE " + a + ".notes NO FORCE ROW LEVEL SECURITY",
		"DROP POLICY tenant_isolation ON " + a + ".tags",
		"CREATE POLICY everyone ON " + b + ".projects USING (true)",
		"ALTER TABLE " + b + ".notes OWNER TO " + app,
		"GRANT CREATE ON SCHEMA public TO PUBLIC",
		"CREATE VIEW " + b + ".all_projects AS SELECT * FROM " + b + ".projects",
		"CREATE FUNCTION public.peek() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT 1::bigint'",
		"DROP SCHEMA " + c + " CASCADE",
		"CREATE SCHEMA tenant_orphan",
		"CREATE TABLE public.shared_emails (id int PRIMARY KEY, tenant_id text, email text UNIQUE, UNIQUE (tenant_id, id))",
		"CREATE TABLE public.shared_codes (tenant_id text NOT NULL, code text, UNIQUE (code) INCLUDE (tenant_id))",
		"CREATE TABLE public.counters (id serial, tenant_id uuid NOT NULL)",
		"CREATE TABLE public.orders (id int PRIMARY KEY, tenant_id text NOT NULL)",
		"CREATE TABLE public.order_lines (tenant_id text NOT NULL, order_id int REFERENCES public.orders (id))",
		"CREATE TABLE public.projects (id int)",
		"GRANT USAGE ON SEQUENCE public.counters_id_seq TO " + app,
		// The tenant policy's name on another meaning, a restrictive policy
		// (allowed), a grant to PUBLIC, a view reaching another tenant.
		"ALTER POLICY tenant_isolation ON " + b + ".tags USING (true) WITH CHECK (true)",
		"CREATE POLICY narrow ON " + a + ".notes AS RESTRICTIVE USING (tenant_id <> 'x')",
		"GRANT SELECT ON " + b + ".tags TO PUBLIC",
		"CREATE VIEW " + a + ".cross_view WITH (security_invoker = true) AS SELECT p.id FROM " + b + ".projects p",
		// Tenant a's own policy, copied onto b's table: right words, wrong
		// tenant.
		"ALTER POLICY tenant_isolation ON " + b + ".notes USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::text AND tenant_id = '" + recs[0].ID +
			"'::text) WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::text AND tenant_id = '" + recs[0].ID + "'::text)",
		// A security_barrier view of a superuser bypasses RLS.
		"CREATE VIEW " + a + ".super_barrier WITH (security_barrier) AS SELECT id FROM " + a + ".projects",
	} {
		if _, err := admin.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	// tenancy's own definition of the tenant policy, replaced by one that
	// calls every table confined: reported, and Audit's own copy still
	// finds every table's policy findings.
	if _, err := admin.Exec(ctx, `CREATE OR REPLACE FUNCTION tenancy.tenant_policies(p_rels oid[], p_pins text[], p_setting text, p_app_role text, p_forms text[])
		RETURNS TABLE (rel oid, state text, policy text, detail text) LANGUAGE sql AS $$ SELECT r, 'ours', 'tenant_isolation', '' FROM unnest(p_rels) r $$`); err != nil {
		t.Fatal(err)
	}
	// A security_barrier view of the owner role, which is subject to the
	// forced RLS of the tables it reads: no finding.
	if _, err := pg.OwnerPool(t).Exec(ctx, "CREATE VIEW "+a+".owner_barrier WITH (security_barrier) AS SELECT id FROM "+a+".projects"); err != nil {
		t.Fatal(err)
	}
	findings, err = reg.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ Check, Object string }
	var got []key
	for _, f := range findings {
		if f.Problem == "" || f.Fix == "" {
			t.Errorf("finding without problem or fix: %v", f)
		}
		got = append(got, key{f.Check, f.Object})
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Check+got[i].Object < got[j].Check+got[j].Object })
	want := []key{
		{"app-role-owns-table", b + ".notes"},
		{"extra-permissive-policy", b + ".projects"},
		{"policy-altered", b + ".tags"},
		{"policy-altered", b + ".notes"},
		{"public-grant", b + ".tags"},
		{"view-reaches-other-schema", a + ".cross_view (reads " + b + ".projects)"},
		{"no-policy", a + ".tags"},
		{"public-create", "public"},
		{"registry-without-schema", `tenant "audit_c"`},
		{"rls-disabled", a + ".projects"},
		{"rls-not-forced", a + ".notes"},
		{"schema-without-registry", "tenant_orphan"},
		{"security-definer-function", "public.peek()"},
		{"foreign-key-without-tenant", "public.order_lines (order_lines_order_id_fkey -> public.orders)"},
		{"sequence-default", "public.counters.id"},
		{"shared-twin", a + ".projects (also public.projects)"},
		{"shared-twin", b + ".projects (also public.projects)"},
		{"unique-without-tenant", "public.orders (orders_pkey)"},
		{"sequence-privilege", "public.counters_id_seq"},
		{"sequence-privilege", b + ".notes_id_seq"}, // the app role owns notes, and so its identity sequence
		{"unique-without-tenant", "public.shared_codes (shared_codes_code_tenant_id_key)"},
		{"unique-without-tenant", "public.shared_emails (shared_emails_email_key)"},
		{"unique-without-tenant", "public.shared_emails (shared_emails_pkey)"},
		{"view-not-security-invoker", b + ".all_projects"},
		{"tenancy-function-altered", "tenancy.tenant_policies(oid[],text[],text,text,text[])"},
		{"view-not-security-invoker", a + ".super_barrier"},
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Check+want[i].Object < want[j].Check+want[j].Object })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	for _, f := range findings {
		if f.Check == "policy-altered" && f.Object == b+".tags" && !strings.Contains(f.Problem, "USING (true) WITH CHECK (true)") {
			t.Errorf("policy-altered does not show the expression found: %v", f)
		}
	}
}

func TestAuditPrivilegedAppRole(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t).NewDatabase(t)
	url := pg.CreateRole(t, "BYPASSRLS")
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, pg, func(c *provision.Config) { c.AppRole = cfg.User })
	findings, err := reg.Audit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 1 || findings[0].Check != "privileged-app-role" || findings[0].Object != cfg.User {
		t.Errorf("findings = %v", findings)
	}
}

// TestAuditAppRoleMembership: an app role that is a member of another role
// is reported, naming the role, with the REVOKE that fixes it.
func TestAuditAppRoleMembership(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t).NewDatabase(t)
	app, err := pgx.ParseConfig(pg.CreateRole(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	group, err := pgx.ParseConfig(pg.CreateRole(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, pg, func(c *provision.Config) { c.AppRole = app.User })
	ctx := context.Background()
	if findings, err := reg.Audit(ctx); err != nil || len(findings) != 0 {
		t.Fatalf("before: %v, %v", findings, err)
	}
	if _, err := pg.AdminPool(t).Exec(ctx, "GRANT "+pgx.Identifier{group.User}.Sanitize()+" TO "+pgx.Identifier{app.User}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	findings, err := reg.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 1 || findings[0].Check != "app-role-member" || findings[0].Object != app.User ||
		!strings.Contains(findings[0].Problem, group.User) || !strings.HasPrefix(findings[0].Fix, "REVOKE "+group.User) {
		t.Errorf("findings = %v", findings)
	}
}

// TestAuditAppRoleAttributesAndSettings: CREATEROLE, CREATEDB and
// REPLICATION on the app role, and role or database settings its new
// connections would inherit and pgtenant.New refuses, are each reported
// with the ALTER that fixes them; a harmless setting is not.
func TestAuditAppRoleAttributesAndSettings(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t).NewDatabase(t)
	app, err := pgx.ParseConfig(pg.CreateRole(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, pg, func(c *provision.Config) { c.AppRole = app.User })
	ctx := context.Background()
	admin := pg.AdminPool(t)
	role, db := pgx.Identifier{app.User}.Sanitize(), pgx.Identifier{pg.Database}.Sanitize()
	for _, c := range []struct{ alter, problem, fix string }{
		{"ALTER ROLE " + role + " CREATEROLE", "CREATEROLE", "ALTER ROLE " + role + " NOCREATEROLE"},
		{"ALTER ROLE " + role + " CREATEDB", "CREATEDB", "ALTER ROLE " + role + " NOCREATEDB"},
		{"ALTER ROLE " + role + " REPLICATION", "REPLICATION", "ALTER ROLE " + role + " NOREPLICATION"},
		{"ALTER ROLE " + role + " SET statement_timeout = 1", "statement_timeout = 1 (role setting)", "ALTER ROLE " + role + " RESET statement_timeout"},
		{"ALTER ROLE " + role + " IN DATABASE " + db + " SET search_path = public", "search_path = public (role in database setting)", "ALTER ROLE " + role + " IN DATABASE " + db + " RESET search_path"},
		{"ALTER DATABASE " + db + " SET default_transaction_read_only = on", "default_transaction_read_only = on (database setting)", "ALTER DATABASE " + db + " RESET default_transaction_read_only"},
	} {
		if _, err := admin.Exec(ctx, c.alter); err != nil {
			t.Fatal(err)
		}
		findings, err := reg.Audit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(findings) != 1 || findings[0].Object != app.User || !strings.Contains(findings[0].Problem, c.problem) || findings[0].Fix != c.fix {
			t.Errorf("after %s: findings = %v", c.alter, findings)
		}
		if _, err := admin.Exec(ctx, c.fix); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Exec(ctx, "ALTER ROLE "+role+" SET statement_timeout = '30s'"); err != nil {
		t.Fatal(err)
	}
	if findings, err := reg.Audit(ctx); err != nil || len(findings) != 0 {
		t.Errorf("a harmless setting: %v, %v", findings, err)
	}
}

// TestAuditGooseVersionTable: goose's version table in a tenant schema (the
// migrate package's bookkeeping, never confined) is no finding while the app
// role cannot reach it, and is one once it can.
func TestAuditGooseVersionTable(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t).NewDatabase(t)
	reg := newRegistry(t, pg, nil)
	ctx := context.Background()
	rec, err := reg.Create(ctx, provision.Spec{Slug: slug("goose")})
	if err != nil {
		t.Fatal(err)
	}
	table := pgx.Identifier{rec.SchemaName, "goose_db_version"}.Sanitize()
	owner := pg.OwnerPool(t)
	if _, err := owner.Exec(ctx, "CREATE TABLE "+table+" (id serial PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	if findings, err := reg.Audit(ctx); err != nil || len(findings) != 0 {
		t.Fatalf("goose table the app role cannot reach: %v, %v", findings, err)
	}
	if _, err := owner.Exec(ctx, "GRANT SELECT ON "+table+" TO "+pgx.Identifier{pg.AppRole}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	findings, err := reg.Audit(ctx)
	if err != nil || len(findings) == 0 || findings[0].Object != rec.SchemaName+".goose_db_version" {
		t.Errorf("goose table the app role can read: %v, %v", findings, err)
	}
}

// TestAuditSkipsExtensionObjects: an extension's own views and functions
// (pg_stat_statements' views are not security_invoker) are the extension's,
// not the application's, and are not reported; the same view made by the
// application is.
func TestAuditSkipsExtensionObjects(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t).NewDatabase(t)
	ctx := context.Background()
	if _, err := pg.AdminPool(t).Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public"); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.OwnerPool(t).Exec(ctx, "CREATE VIEW public.app_view AS SELECT 1 AS one"); err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, pg, nil)
	findings, err := reg.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var views []string
	for _, f := range findings {
		if f.Check == "view-not-security-invoker" {
			views = append(views, f.Object)
		}
	}
	if diff := cmp.Diff([]string{"public.app_view"}, views); diff != "" {
		t.Errorf("views reported (-want +got):\n%s", diff)
	}
}
