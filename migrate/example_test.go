package migrate_test

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/migrate"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

func ExampleMigrator_UpAll() {
	pg := testenv.ExamplePostgreSQL()
	ctx := context.Background()
	owner, err := pgxpool.New(ctx, pg.OwnerURL)
	if err != nil {
		panic(err)
	}
	defer owner.Close()
	reg, err := provision.New(ctx, provision.Config{Owner: owner, AppRole: pg.AppRole, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	// Three tenants, provisioned empty (the registry as the fleet).
	var fleet []tenant.Tenant
	for range 3 {
		rec, err := reg.Create(ctx, provision.Spec{Slug: testenv.NewTenant("shop").Slug})
		if err != nil {
			panic(err)
		}
		fleet = append(fleet, rec.Tenant())
	}

	chain, _ := fs.Sub(tenantFiles, "testdata/tenant") // an embed.FS of goose SQL files
	cc, _ := pgx.ParseConfig(pg.OwnerURL)
	m, err := migrate.New(migrate.Config{
		ConnConfig: cc,
		Tenant:     chain,
		AppRole:    pg.AppRole,
		Logger:     slog.New(slog.DiscardHandler),
		Progress:   func(p migrate.Progress) { fmt.Printf("%d/%d tenants, %d failed\n", p.Done, p.Total, p.Failed) },
	})
	if err != nil {
		panic(err)
	}
	// The fleet is passed to each call; in a service, the registry itself:
	// m.UpAll(ctx, reg).
	tenants := migrate.TenantSourceFunc(func(context.Context) ([]tenant.Tenant, error) { return fleet, nil })
	report, err := m.UpAll(ctx, tenants)
	fmt.Println(report.Migrated, "migrated,", report.Skipped, "up to date,", err, report.Err())

	report, _ = m.UpAll(ctx, tenants) // nothing left to do: a cheap check
	fmt.Println(report.Migrated, "migrated,", report.Skipped, "up to date")
	// Output:
	// 1/3 tenants, 0 failed
	// 2/3 tenants, 0 failed
	// 3/3 tenants, 0 failed
	// 3 migrated, 0 up to date, <nil> <nil>
	// 0 migrated, 3 up to date
}
