package migrate_test

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/migrate"
	"github.com/tenancykit/tenancy/provision/provisiontest"
)

func ExampleMigrator_UpAll() {
	// A throwaway database with three tenants, provisioned empty
	// (provisiontest: an administrator from $TENANCY_TEST_ADMIN_URL or local
	// postgres). In a service: your owner pool and registry.
	ctx := context.Background()
	env, cleanup, err := provisiontest.Start(ctx, provisiontest.Options{Slugs: []string{"shop_1", "shop_2", "shop_3"}})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}

	chain, _ := fs.Sub(tenantFiles, "testdata/tenant") // an embed.FS of goose SQL files
	cc, _ := pgx.ParseConfig(env.OwnerURL)
	m, err := migrate.New(migrate.Config{
		ConnConfig: cc,
		Tenant:     chain,
		AppRole:    env.AppRole,
		Logger:     slog.New(slog.DiscardHandler),
		Progress:   func(p migrate.Progress) { fmt.Printf("%d/%d tenants, %d failed\n", p.Done, p.Total, p.Failed) },
	})
	if err != nil {
		panic(err)
	}
	// The fleet is passed to each call: here the registry itself.
	tenants := env.Registry
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
