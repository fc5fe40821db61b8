package provisiontest_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/provision/provisiontest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var notesDDL = provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL)`)

// TestEnv: New gives a database with two provisioned tenants that the app
// role reaches only one at a time, and everything it made is gone once the
// test that made it ends.
func TestEnv(t *testing.T) {
	adminURL := testenv.PostgreSQL(t).AdminURL
	var env *provisiontest.Env
	t.Run("use", func(t *testing.T) {
		env = provisiontest.New(t, provisiontest.Options{AdminURL: adminURL, Builder: notesDDL, Tenants: 2})
		if len(env.Tenants) != 2 || env.Tenants[0].Slug != "tenant_1" || env.Tenants[1].Slug != "tenant_2" {
			t.Fatalf("tenants %+v", env.Tenants)
		}
		pool := env.AppPool(t)
		for i := range env.Tenants {
			if _, err := pool.Exec(env.Context(i), "INSERT INTO notes (body) VALUES ($1)", fmt.Sprint("note of ", i)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range env.Tenants {
			rows, _ := pool.Query(env.Context(i), "SELECT body FROM notes")
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil || len(got) != 1 || got[0] != fmt.Sprint("note of ", i) {
				t.Errorf("tenant %d sees %v (%v)", i, got, err)
			}
		}
		if findings, err := env.Registry.Audit(context.Background()); err != nil || len(findings) != 0 {
			t.Errorf("Audit: %v, %v", findings, err)
		}
	})
	admin := testenv.PostgreSQL(t).AdminPool(t)
	var n int
	if err := admin.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_database WHERE datname = $1)
		+ (SELECT count(*) FROM pg_roles WHERE rolname IN ($2, $3))`, env.Database, env.OwnerRole, env.AppRole).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d of the database and roles left after the test (%v)", n, err)
	}
}

// TestStartFailureLeavesNothing: when set-up fails after Bootstrap (a DDL
// typo, a registry that cannot be made), Start returns an error naming the
// database, and its cleanup — which must not panic, and may be called twice
// — removes the database and both roles.
func TestStartFailureLeavesNothing(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	admin := pg.AdminPool(t)
	names := regexp.MustCompile(`database (pt_[0-9a-f]{12}) \(roles (pt_[0-9a-f]{12}_owner), (pt_[0-9a-f]{12}_app)\)`)
	for name, opts := range map[string]provisiontest.Options{
		"ddl typo": {Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body txet)`), Tenants: 2},
		"registry": {Configure: func(c *provision.Config) { c.Mode = pgtenant.SharedTables }}, // and no SharedTables
	} {
		t.Run(name, func(t *testing.T) {
			opts.AdminURL = pg.AdminURL
			env, cleanup, err := provisiontest.Start(context.Background(), opts)
			if err == nil {
				cleanup()
				t.Fatal("Start succeeded")
			}
			if env != nil || cleanup == nil {
				t.Fatalf("Start failed with env %v and cleanup %v, want nil and a cleanup", env, cleanup != nil)
			}
			m := names.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("error %q does not name the database and roles", err)
			}
			count := func() int {
				var n int
				if err := admin.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_database WHERE datname = $1)
					+ (SELECT count(*) FROM pg_roles WHERE rolname IN ($2, $3))`, m[1], m[2], m[3]).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if n := count(); n != 3 {
				t.Errorf("before cleanup: %d of the database and roles exist, want 3 (set-up got past Bootstrap)", n)
			}
			cleanup()
			cleanup()
			if n := count(); n != 0 {
				t.Errorf("after cleanup: %d of the database and roles left", n)
			}
		})
	}
}
