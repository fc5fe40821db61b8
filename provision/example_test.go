package provision_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

func ExampleRegistry_Create() {
	pg := testenv.ExamplePostgreSQL()
	ctx := context.Background()
	owner, err := pgxpool.New(ctx, pg.OwnerURL)
	if err != nil {
		panic(err)
	}
	defer owner.Close()

	reg, err := provision.New(ctx, provision.Config{
		Owner:   owner,
		AppRole: pg.AppRole,
		Builder: provision.DDL(`CREATE TABLE projects (id bigserial PRIMARY KEY, tenant_id text NOT NULL, title text)`),
	})
	if err != nil {
		panic(err)
	}
	slug := testenv.NewTenant("example").Slug
	rec, err := reg.Create(ctx, provision.Spec{Slug: slug, Name: "Example Inc."})
	if err != nil {
		panic(err)
	}
	fmt.Println(rec.Status, rec.SchemaName == "tenant_"+slug)

	// The application reaches it through pgtenant, as the app role.
	cfg, _ := pgxpool.ParseConfig(pg.AppURL)
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	t, _ := reg.LookupTenant(ctx, slug) // what tenant.Middleware does per request
	tctx := tenant.NewContext(ctx, t)
	if _, err := pool.Exec(tctx, "INSERT INTO projects (title) VALUES ('apollo')"); err != nil {
		panic(err)
	}
	var n int
	_ = pool.QueryRow(tctx, "SELECT count(*) FROM projects").Scan(&n)
	fmt.Println(n, "project")

	// Suspended tenants are not served; deleted ones are gone.
	_ = reg.Suspend(ctx, slug)
	_, err = reg.LookupTenant(ctx, slug)
	fmt.Println(errors.Is(err, tenant.ErrSuspended))
	_ = reg.Delete(ctx, slug)
	_, err = reg.Get(ctx, slug)
	fmt.Println(errors.Is(err, provision.ErrTenantNotFound))
	// Output:
	// active true
	// 1 project
	// true
	// true
}

func ExampleRegistry_Watch() {
	pg := testenv.ExamplePostgreSQL()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	owner, err := pgxpool.New(ctx, pg.OwnerURL)
	if err != nil {
		panic(err)
	}
	defer owner.Close()
	reg, err := provision.New(ctx, provision.Config{Owner: owner, AppRole: pg.AppRole,
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL)`)})
	if err != nil {
		panic(err)
	}

	// Each instance of the service caches lookups and watches the registry,
	// so a change made by any instance reaches every cache at once.
	cache := tenant.NewCache(reg, tenant.CacheConfig{})
	go func() { _ = reg.Watch(ctx, cache) }()

	slug := testenv.NewTenant("watched").Slug
	if _, err := reg.Create(ctx, provision.Spec{Slug: slug}); err != nil {
		panic(err)
	}
	_, err = cache.LookupTenant(ctx, slug)
	fmt.Println("served:", err == nil)
	_ = reg.Suspend(ctx, slug) // in production: another instance, or an admin tool
	for range 100 {
		if _, err = cache.LookupTenant(ctx, slug); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("suspended:", errors.Is(err, tenant.ErrSuspended))
	// Output:
	// served: true
	// suspended: true
}
