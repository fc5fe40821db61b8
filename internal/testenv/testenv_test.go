package testenv_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/tenant"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestPostgreSQLRoles(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	admin := pg.AdminPool(t)

	type roleAttrs struct {
		Super, BypassRLS, CreateDB, CreateRole bool
	}
	for _, role := range []string{pg.OwnerRole, pg.AppRole} {
		var got roleAttrs
		err := admin.QueryRow(ctx, "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1", role).
			Scan(&got.Super, &got.BypassRLS, &got.CreateDB, &got.CreateRole)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if diff := cmp.Diff(roleAttrs{}, got); diff != "" {
			t.Errorf("role %s attributes (-want +got):\n%s", role, diff)
		}
	}
	var dbOwner string
	if err := admin.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").Scan(&dbOwner); err != nil {
		t.Fatal(err)
	}
	if dbOwner != pg.OwnerRole {
		t.Errorf("database owned by %q, want %q", dbOwner, pg.OwnerRole)
	}

	var who, db string
	if err := pg.AppPool(t).QueryRow(ctx, "SELECT current_user, current_database()").Scan(&who, &db); err != nil {
		t.Fatal(err)
	}
	if who != pg.AppRole || db != pg.Database {
		t.Errorf("app pool is %s@%s, want %s@%s", who, db, pg.AppRole, pg.Database)
	}
	if _, err := pg.AppPool(t).Exec(ctx, "CREATE SCHEMA app_may_not"); err == nil {
		t.Error("the app role could create a schema")
	}
	if _, err := pg.OwnerPool(t).Exec(ctx, "CREATE SCHEMA IF NOT EXISTS owner_may"); err != nil {
		t.Errorf("the owner role could not create a schema: %v", err)
	}
}

// TestAppRoleIsSubjectToRLS is the negative control every isolation test
// relies on: with FORCE RLS and the app role, a policy really filters rows.
func TestAppRoleIsSubjectToRLS(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	owner := pg.OwnerPool(t)
	for _, s := range []string{
		"DROP TABLE IF EXISTS rls_probe", // a run before this one (-count)
		"CREATE TABLE rls_probe (tenant_id text NOT NULL, v text)",
		"INSERT INTO rls_probe VALUES ('a', 'a1'), ('a', 'a2'), ('b', 'b1')",
		"ALTER TABLE rls_probe ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE rls_probe FORCE ROW LEVEL SECURITY",
		"CREATE POLICY p ON rls_probe USING (tenant_id = nullif(current_setting('app.tenant_id', true), ''))",
		"GRANT SELECT ON rls_probe TO " + pgx.Identifier{pg.AppRole}.Sanitize(),
	} {
		if _, err := owner.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	app := pg.AppPool(t)
	read := func(setting string) []string {
		t.Helper()
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", setting); err != nil {
			t.Fatal(err)
		}
		rows, _ := tx.Query(ctx, "SELECT v FROM rls_probe ORDER BY v")
		vs, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	if diff := cmp.Diff([]string{"a1", "a2"}, read("a")); diff != "" {
		t.Errorf("tenant a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b1"}, read("b")); diff != "" {
		t.Errorf("tenant b (-want +got):\n%s", diff)
	}
	if got := read(""); len(got) != 0 {
		t.Errorf("empty setting saw %v, want nothing", got)
	}
	var active bool
	if err := app.QueryRow(ctx, "SELECT row_security_active('rls_probe')").Scan(&active); err != nil || !active {
		t.Errorf("row_security_active = %v, %v; want true for the app role", active, err)
	}
}

func TestCreateRole(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	url := testenv.PostgreSQL(t).CreateRole(t, "BYPASSRLS")
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var bypass bool
	if err := conn.QueryRow(context.Background(), "SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user").Scan(&bypass); err != nil || !bypass {
		t.Errorf("rolbypassrls = %v, %v; want true", bypass, err)
	}
	if conn.Config().Database != pg.Database {
		t.Errorf("connected to %q, want %q", conn.Config().Database, pg.Database)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	c := testenv.RedisClient(t)
	ctx := context.Background()
	key := "testenv:" + testenv.UniqueID("k")
	t.Cleanup(func() { c.Do(context.Background(), c.B().Del().Key(key).Build()) })
	if err := c.Do(ctx, c.B().Set().Key(key).Value("v").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Do(ctx, c.B().Get().Key(key).Build()).ToString(); err != nil || got != "v" {
		t.Errorf("GET = %q, %v", got, err)
	}
}

func TestTenantAndUniqueID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		tn := testenv.Tenant(t, "acme")
		if err := tn.Validate(); err != nil {
			t.Fatal(err)
		}
		if seen[tn.ID] || seen[tn.Slug] {
			t.Fatalf("duplicate tenant %v", tn)
		}
		seen[tn.ID], seen[tn.Slug] = true, true
	}
	if err := tenant.ValidateID(testenv.UniqueID("x")); err != nil {
		t.Error(err)
	}
}

func TestFindReportsWhatIsMissing(t *testing.T) {
	t.Setenv(testenv.EnvForceDocker, "") // the variables are what is tried
	t.Setenv(testenv.EnvPGAdminURL, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable")
	t.Setenv(testenv.EnvRedisAddr, "127.0.0.1:1")
	ctx := context.Background()
	if _, err := testenv.FindPostgreSQL(ctx); !errors.Is(err, testenv.ErrUnavailable) || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("FindPostgreSQL = %v, want ErrUnavailable naming PostgreSQL", err)
	}
	if _, err := testenv.FindRedis(ctx); !errors.Is(err, testenv.ErrUnavailable) || !strings.Contains(err.Error(), "Redis") {
		t.Errorf("FindRedis = %v, want ErrUnavailable naming Redis", err)
	}
}

// TestMissingServiceFailsWhenRequired runs this package's own integration
// test in a child process with PostgreSQL pointed at a closed port: it must
// fail under TENANCY_REQUIRE_SERVICES=1 and skip without it, never pass.
func TestMissingServiceFailsWhenRequired(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		t.Skip("already in the child")
	}
	t.Parallel()
	run := func(require string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPostgreSQLRoles$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(),
			"TESTENV_CHILD=1",
			testenv.EnvForceDocker+"=", // the variable is what is tried
			testenv.EnvPGAdminURL+"=postgres://postgres@127.0.0.1:1/postgres?sslmode=disable",
			testenv.EnvRequireServices+"="+require)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("1")
	if err == nil || !strings.Contains(out, "--- FAIL: TestPostgreSQLRoles") || !strings.Contains(out, "PostgreSQL at TENANCY_PG_ADMIN_URL") {
		t.Errorf("with services required, want a failure naming PostgreSQL; err %v, output:\n%s", err, out)
	}
	out, err = run("0")
	if err != nil || !strings.Contains(out, "--- SKIP: TestPostgreSQLRoles") {
		t.Errorf("without services required, want a skip; err %v, output:\n%s", err, out)
	}
}
