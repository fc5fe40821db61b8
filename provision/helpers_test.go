package provision_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// itemsDDL is a typical tenant schema: three tables, indexes, a sequence.
var itemsDDL = provision.DDL(
	`CREATE TABLE projects (id bigserial PRIMARY KEY, tenant_id text NOT NULL, title text NOT NULL)`,
	`CREATE TABLE notes (id bigserial PRIMARY KEY, tenant_id text NOT NULL, project_id bigint REFERENCES projects, body text)`,
	`CREATE TABLE tags (tenant_id uuid, name text NOT NULL, UNIQUE (tenant_id, name))`,
	`CREATE INDEX notes_project ON notes (project_id)`,
)

func newRegistry(t testing.TB, pg *testenv.PG, configure func(*provision.Config)) *provision.Registry {
	t.Helper()
	owner, err := pgxpool.New(context.Background(), pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	cfg := provision.Config{Owner: owner, AppRole: pg.AppRole, Builder: itemsDDL, Logger: slog.New(slog.DiscardHandler)}
	if configure != nil {
		configure(&cfg)
	}
	r, err := provision.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func appPool(t testing.TB, pg *testenv.PG, mode pgtenant.Mode) *pgtenant.Pool {
	t.Helper()
	p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: pg.AppConfig(t), Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func ctxFor(t tenant.Tenant) context.Context { return tenant.NewContext(context.Background(), t) }

// slug returns a unique valid slug starting with prefix.
func slug(prefix string) string { return testenv.NewTenant(prefix).Slug }
