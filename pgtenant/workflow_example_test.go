package pgtenant_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

// The whole workflow with nothing hidden: set up the roles once, provision
// tenants, and query through a pgtenant pool, each tenant seeing only its
// own rows. It connects as a PostgreSQL administrator through
// $TENANCY_TEST_ADMIN_URL (default: postgres on 127.0.0.1:5432) and removes
// what it made at the end.
func Example_workflow() {
	ctx := context.Background()
	adminURL := os.Getenv("TENANCY_TEST_ADMIN_URL")
	if adminURL == "" {
		adminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		panic(err)
	}
	defer admin.Close(ctx)

	// 1. Once per environment: the database, the owner role and the app
	// role (NOSUPERUSER NOBYPASSRLS, a member of no role).
	boot := provision.BootstrapConfig{Database: "tenancy_workflow_example",
		OwnerRole: "tenancy_workflow_owner", OwnerPassword: "owner-example",
		AppRole: "tenancy_workflow_app", AppPassword: "app-example"}
	if err := provision.Bootstrap(ctx, admin, boot); err != nil {
		panic(err)
	}
	defer func() { // the example cleans up after itself
		_, _ = admin.Exec(ctx, "DROP DATABASE tenancy_workflow_example WITH (FORCE)")
		_, _ = admin.Exec(ctx, "DROP ROLE tenancy_workflow_app, tenancy_workflow_owner")
	}()
	roleURL := func(role, password string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(role, password), Path: "/" + boot.Database,
			Host: net.JoinHostPort(admin.Config().Host, strconv.Itoa(int(admin.Config().Port)))}
		return u.String()
	}

	// 2. Provisioning, as the owner: a schema per tenant, confined by RLS.
	owner, err := pgxpool.New(ctx, roleURL(boot.OwnerRole, boot.OwnerPassword))
	if err != nil {
		panic(err)
	}
	defer owner.Close()
	reg, err := provision.New(ctx, provision.Config{Owner: owner, AppRole: boot.AppRole,
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL)`)})
	if err != nil {
		panic(err)
	}
	var tenants []tenant.Tenant
	for _, slug := range []string{"acme", "globex"} {
		rec, err := reg.Create(ctx, provision.Spec{Slug: slug})
		if err != nil {
			panic(err)
		}
		tenants = append(tenants, rec.Tenant())
	}

	// 3. The application, as the app role: every statement in the
	// context's tenant.
	cfg, err := pgxpool.ParseConfig(roleURL(boot.AppRole, boot.AppPassword))
	if err != nil {
		panic(err)
	}
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	for _, t := range tenants {
		tctx := tenant.NewContext(ctx, t) // tenant.Middleware does this per request
		if _, err := pool.Exec(tctx, "INSERT INTO notes (body) VALUES ($1)", "hello from "+t.Slug); err != nil {
			panic(err)
		}
	}
	for _, t := range tenants {
		rows, _ := pool.Query(tenant.NewContext(ctx, t), "SELECT body FROM notes")
		bodies, err := pgx.CollectRows(rows, pgx.RowTo[string])
		fmt.Println(t.Slug, bodies, err)
	}
	_, err = pool.Exec(ctx, "SELECT 1") // no tenant in the context
	fmt.Println(err)
	// Output:
	// acme [hello from acme] <nil>
	// globex [hello from globex] <nil>
	// tenant: no tenant in context
}
