package isolationtest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

func TestMain(m *testing.M) { testenv.Main(m) }

type fixture struct {
	pg       *testenv.PG
	a, b     provision.Record
	pool     *pgtenant.Pool
	registry *provision.Registry
}

func setup(t *testing.T) fixture {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	reg, _ := docsRegistry(t, pg, `CREATE TABLE docs (id int PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL)`)
	var err error
	f := fixture{pg: pg, registry: reg}
	if f.a, err = reg.Create(ctx, provision.Spec{Slug: testenv.NewTenant("atk_a").Slug}); err != nil {
		t.Fatal(err)
	}
	if f.b, err = reg.Create(ctx, provision.Spec{Slug: testenv.NewTenant("atk_b").Slug}); err != nil {
		t.Fatal(err)
	}
	if f.pool, err = pgtenant.New(ctx, pgtenant.Config{PoolConfig: pg.AppConfig(t)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.pool.Close)
	for _, r := range []struct {
		rec  provision.Record
		rows []string
	}{{f.a, []string{"a1", "a2"}}, {f.b, []string{"b1"}}} {
		for i, body := range r.rows {
			if _, err := f.pool.Exec(ctxOf(r.rec), "INSERT INTO docs (id, body) VALUES ($1, $2)", i+1, body); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

// docsRegistry returns a registry whose tenants get a docs table, and the
// owner pool behind it (closed when the test ends).
func docsRegistry(t *testing.T, pg *testenv.PG, docsDDL string) (*provision.Registry, *pgxpool.Pool) {
	t.Helper()
	owner, err := pgxpool.New(context.Background(), pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	reg, err := provision.New(context.Background(), provision.Config{Owner: owner, AppRole: pg.AppRole,
		Logger: slog.New(slog.DiscardHandler), Builder: provision.DDL(docsDDL)})
	if err != nil {
		t.Fatal(err)
	}
	return reg, owner
}

// createTenants provisions n tenants with slugs starting with prefix.
func createTenants(t *testing.T, reg *provision.Registry, prefix string, n int) []tenant.Tenant {
	t.Helper()
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

const serialDocs = `CREATE TABLE docs (id bigserial PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL)`

func ctxOf(r provision.Record) context.Context {
	return tenant.NewContext(context.Background(), r.Tenant())
}

// outcome renders what a statement did: the rows it returned, the rows it
// changed, or the SQLSTATE (or SDK error) it failed with.
func outcome(rows []string, ct pgconn.CommandTag, err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return "error " + pgErr.Code
	case errors.Is(err, tenant.ErrNoTenant):
		return "refused: no tenant"
	case err != nil:
		return "error: " + err.Error()
	case rows != nil:
		slices.Sort(rows)
		return "rows " + strings.Join(rows, ",")
	}
	return fmt.Sprintf("%s %d", strings.Fields(ct.String())[0], ct.RowsAffected())
}

// TestAttackMatrix runs every statement kind as the tenant itself, as
// another tenant naming the table's schema explicitly, and with no tenant,
// and compares each outcome with the one isolation demands. Every cell runs
// in a transaction that is rolled back, so cells do not see each other.
func TestAttackMatrix(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	target := pgx.Identifier{f.a.SchemaName, "docs"}.Sanitize() // tenant A's table, fully qualified
	type identity struct {
		name  string
		begin func() (pgx.Tx, error)
	}
	identities := []identity{
		{"same tenant", func() (pgx.Tx, error) { return f.pool.Begin(ctxOf(f.a)) }},
		{"other tenant", func() (pgx.Tx, error) { return f.pool.Begin(ctxOf(f.b)) }},
		// The SDK refuses a context without a tenant before any I/O; to test
		// the database layer underneath, the same app role connects unscoped.
		{"no tenant (SDK)", func() (pgx.Tx, error) { return f.pool.Begin(context.Background()) }},
		{"no tenant (raw)", func() (pgx.Tx, error) { return f.pool.Unscoped().Begin(ctx) }},
	}
	statements := []struct {
		kind string
		run  func(tx pgx.Tx) ([]string, pgconn.CommandTag, error)
	}{
		{"SELECT", func(tx pgx.Tx) ([]string, pgconn.CommandTag, error) {
			rows, _ := tx.Query(ctx, "SELECT body FROM "+target)
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if got == nil {
				got = []string{}
			}
			return got, pgconn.CommandTag{}, err
		}},
		{"INSERT own id", func(tx pgx.Tx) ([]string, pgconn.CommandTag, error) {
			ct, err := tx.Exec(ctx, "INSERT INTO "+target+" (id, body) VALUES (10, 'x')")
			return nil, ct, err
		}},
		{"INSERT A's id", func(tx pgx.Tx) ([]string, pgconn.CommandTag, error) {
			ct, err := tx.Exec(ctx, "INSERT INTO "+target+" (id, tenant_id, body) VALUES (11, $1, 'x')", f.a.ID)
			return nil, ct, err
		}},
		{"UPDATE", func(tx pgx.Tx) ([]string, pgconn.CommandTag, error) {
			ct, err := tx.Exec(ctx, "UPDATE "+target+" SET body = 'pwned'")
			return nil, ct, err
		}},
		{"DELETE", func(tx pgx.Tx) ([]string, pgconn.CommandTag, error) {
			ct, err := tx.Exec(ctx, "DELETE FROM "+target)
			return nil, ct, err
		}},
		{"UPSERT", func(tx pgx.Tx) ([]string, pgconn.CommandTag, error) {
			ct, err := tx.Exec(ctx, "INSERT INTO "+target+" (id, body) VALUES (1, 'pwned') ON CONFLICT (id) DO UPDATE SET body = excluded.body")
			return nil, ct, err
		}},
		{"COPY TO", func(tx pgx.Tx) ([]string, pgconn.CommandTag, error) {
			var buf bytes.Buffer
			_, err := tx.Conn().PgConn().CopyTo(ctx, &buf, "COPY "+target+" (body) TO STDOUT")
			got := strings.Fields(buf.String())
			if got == nil {
				got = []string{}
			}
			return got, pgconn.CommandTag{}, err
		}},
		{"COPY FROM A's id", func(tx pgx.Tx) ([]string, pgconn.CommandTag, error) {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{f.a.SchemaName, "docs"}, []string{"id", "tenant_id", "body"}, pgx.CopyFromRows([][]any{{20, f.a.ID, "x"}}))
			return nil, pgconn.NewCommandTag(fmt.Sprintf("COPY %d", n)), err
		}},
		{"TRUNCATE", func(tx pgx.Tx) ([]string, pgconn.CommandTag, error) {
			ct, err := tx.Exec(ctx, "TRUNCATE "+target)
			return nil, ct, err
		}},
	}
	got := map[string]map[string]string{}
	for _, id := range identities {
		got[id.name] = map[string]string{}
		for _, st := range statements {
			tx, err := id.begin()
			if err != nil {
				got[id.name][st.kind] = outcome(nil, pgconn.CommandTag{}, err)
				continue
			}
			rows, ct, err := st.run(tx)
			got[id.name][st.kind] = outcome(rows, ct, err)
			_ = tx.Rollback(ctx)
		}
	}
	want := map[string]map[string]string{
		"same tenant": {
			"SELECT": "rows a1,a2", "INSERT own id": "INSERT 1", "INSERT A's id": "INSERT 1", "UPDATE": "UPDATE 2",
			"DELETE": "DELETE 2", "UPSERT": "INSERT 1", "COPY TO": "rows a1,a2", "COPY FROM A's id": "COPY 1",
			"TRUNCATE": "error 42501",
		},
		"other tenant": {
			// Reads, changes and deletes reach none of A's rows; every write
			// fails WITH CHECK: the policy pins A's table to A, so B cannot
			// even add rows of its own there (which would take A's keys).
			"SELECT": "rows ", "INSERT own id": "error 42501", "INSERT A's id": "error 42501", "UPDATE": "UPDATE 0",
			"DELETE": "DELETE 0", "UPSERT": "error 42501", "COPY TO": "rows ", "COPY FROM A's id": "error 42501",
			"TRUNCATE": "error 42501",
		},
		"no tenant (SDK)": {
			"SELECT": "refused: no tenant", "INSERT own id": "refused: no tenant", "INSERT A's id": "refused: no tenant",
			"UPDATE": "refused: no tenant", "DELETE": "refused: no tenant", "UPSERT": "refused: no tenant",
			"COPY TO": "refused: no tenant", "COPY FROM A's id": "refused: no tenant", "TRUNCATE": "refused: no tenant",
		},
		"no tenant (raw)": {
			// An empty setting matches nothing, and the default tenant_id is
			// NULL, which WITH CHECK rejects.
			// Without pgtenant's staging, COPY FROM into an RLS table is refused
			// outright (0A000).
			"SELECT": "rows ", "INSERT own id": "error 42501", "INSERT A's id": "error 42501", "UPDATE": "UPDATE 0",
			"DELETE": "DELETE 0", "UPSERT": "error 42501", "COPY TO": "rows ", "COPY FROM A's id": "error 0A000",
			"TRUNCATE": "error 42501",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attack matrix (-want +got):\n%s", diff)
	}
	// Nothing of the above survived: every cell rolled back.
	rows, _ := f.pool.Query(ctxOf(f.a), "SELECT body FROM docs ORDER BY id")
	if bodies, err := pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || !slices.Equal(bodies, []string{"a1", "a2"}) {
		t.Errorf("A's rows after the matrix: %v, %v", bodies, err)
	}
}

// TestNegativeControl proves the suite runs as a role that cannot bypass row
// level security: were it a superuser or BYPASSRLS, every test above would
// pass for the wrong reason.
func TestNegativeControl(t *testing.T) {
	f := setup(t)
	var user string
	var super, bypass, active bool
	err := f.pool.QueryRow(ctxOf(f.a), `SELECT current_user::text, r.rolsuper, r.rolbypassrls, row_security_active('docs')
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&user, &super, &bypass, &active)
	if err != nil {
		t.Fatal(err)
	}
	if user != f.pg.AppRole || super || bypass || !active {
		t.Fatalf("suite role %s: superuser %v, bypassrls %v, row_security_active %v", user, super, bypass, active)
	}
}

func TestHostileNames(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	for _, slug := range []string{
		`x"; DROP SCHEMA public CASCADE; --`, "acme'", "acme\x00evil", "ａｃｍｅ", "acmе" /* Cyrillic e */, "ACME",
		"public", "tenancy", // reserved; system names are harmless anyway, the schema is tenant_<slug>
		strings.Repeat("a", 49),                                      // would be 56 bytes as a schema: within 63, but over the slug limit
		strings.Repeat("a", 56) + "x", strings.Repeat("a", 56) + "y", // would truncate to the same 63-byte schema
	} {
		if _, err := f.registry.Create(ctx, provision.Spec{Slug: slug}); !errors.Is(err, tenant.ErrInvalidSlug) {
			t.Errorf("slug %q: %v, want ErrInvalidSlug", slug, err)
		}
	}
	for _, id := range []string{"a:b", "a}b", "{a}", "a*", "a?", "a[b]", `a\b`, "a b", "a\x00", strings.Repeat("x", 65), ""} {
		if id != "" { // an empty Spec.ID means "generate one"
			if _, err := f.registry.Create(ctx, provision.Spec{Slug: testenv.NewTenant("ok").Slug, ID: id}); !errors.Is(err, tenant.ErrInvalidID) {
				t.Errorf("ID %q: %v, want ErrInvalidID", id, err)
			}
		}
		// Smuggled into a context, the same IDs never reach SQL either.
		if _, err := f.pool.Exec(tenant.NewContext(ctx, tenant.Tenant{ID: id, Slug: "acme"}), "SELECT 1"); !errors.Is(err, tenant.ErrInvalidID) {
			t.Errorf("context with ID %q: %v", id, err)
		}
	}
}

// TestDefinerObjectsAreFlagged seeds what RLS cannot see through — a view
// without security_invoker and a SECURITY DEFINER function, created by the
// owner in a tenant schema — and checks the audit names both.
func TestDefinerObjectsAreFlagged(t *testing.T) {
	pg := testenv.PostgreSQL(t).NewDatabase(t)
	ctx := context.Background()
	owner, err := pgxpool.New(ctx, pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	reg, err := provision.New(ctx, provision.Config{Owner: owner, AppRole: pg.AppRole, Logger: slog.New(slog.DiscardHandler),
		Builder: provision.DDL(`CREATE TABLE docs (id int PRIMARY KEY, tenant_id text NOT NULL, body text)`)})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := reg.Create(ctx, provision.Spec{Slug: "definer"})
	if err != nil {
		t.Fatal(err)
	}
	s := pgx.Identifier{rec.SchemaName}.Sanitize()
	for _, sql := range []string{
		"CREATE VIEW " + s + ".all_docs AS SELECT * FROM " + s + ".docs",
		"CREATE FUNCTION " + s + ".count_docs() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM " + s + ".docs'",
	} {
		if _, err := owner.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	findings, err := reg.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var checks []string
	for _, f := range findings {
		checks = append(checks, f.Check+" "+f.Object)
	}
	want := []string{"security-definer-function " + rec.SchemaName + ".count_docs()", "view-not-security-invoker " + rec.SchemaName + ".all_docs"}
	if diff := cmp.Diff(want, checks); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
}

// TestTempTableShadowing: tenant B tries to leave a temporary table named
// like A's table on a pooled connection. The statement path refuses it; a
// transaction's own (ON COMMIT DROP) one never shadows B's table either; one
// left through the raw connection (which nothing classifies) still cannot
// shadow A's table, because pg_temp is last on every tenant's search_path.
func TestTempTableShadowing(t *testing.T) {
	f := setup(t)
	cfg := f.pg.AppConfig(t)
	cfg.MaxConns = 1
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctxB := ctxOf(f.b)
	if _, err := pool.Exec(ctxB, "CREATE TEMP TABLE docs (id int, tenant_id text, body text)"); !errors.Is(err, pgtenant.ErrSessionState) {
		t.Fatalf("temporary table on the statement path: %v, want ErrSessionState", err)
	}
	tx, err := pool.Begin(ctxB)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctxB) }()
	for _, sql := range []string{
		"CREATE TEMP TABLE docs (id int, tenant_id text, body text) ON COMMIT DROP",
		"INSERT INTO pg_temp.docs VALUES (1, 'x', 'shadow')",
	} {
		if _, err := tx.Exec(ctxB, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var body string
	if err := tx.QueryRow(ctxB, "SELECT body FROM docs ORDER BY id LIMIT 1").Scan(&body); err != nil || body != "b1" {
		t.Errorf("tenant B in its transaction reads %q (%v), want its own b1", body, err)
	}
	if err := tx.Commit(ctxB); err != nil {
		t.Fatal(err)
	}
	// The raw connection is beyond the classifier.
	tx2, err := pool.Begin(ctxB)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx2.Rollback(ctxB) }()
	if _, err := tx2.Conn().Exec(context.Background(), "CREATE TEMP TABLE docs (id int, tenant_id text, body text); INSERT INTO pg_temp.docs VALUES (1, 'x', 'shadow')",
		pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if err := tx2.Commit(ctxB); err != nil {
		t.Fatal(err)
	}
	rows, _ := pool.Query(ctxOf(f.a), "SELECT body FROM docs ORDER BY id")
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("tenant A reads %v (%v), want its own rows, not B's temporary table", got, err)
	}
}
