package pgtenant_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/tracelog"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// exampleSetup creates two tenants, acme and globex, each with a notes table
// under RLS, as the provision package does, and returns the app role's URL.
func exampleSetup() (appURL string, acme, globex tenant.Tenant) {
	pg := testenv.ExamplePostgreSQL()
	ctx := context.Background()
	owner, err := pgxpool.New(ctx, pg.OwnerURL)
	if err != nil {
		panic(err)
	}
	defer owner.Close()
	acme, globex = testenv.NewTenant("acme"), testenv.NewTenant("globex")
	for _, t := range []tenant.Tenant{acme, globex} {
		s := pgx.Identifier{pgtenant.SchemaName(t)}.Sanitize()
		app := pgx.Identifier{pg.AppRole}.Sanitize()
		policy := "tenant_id = nullif(current_setting('app.tenant_id', true), '')"
		for _, sql := range []string{
			"CREATE SCHEMA " + s,
			"CREATE TABLE " + s + ".notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'), body text)",
			"ALTER TABLE " + s + ".notes ENABLE ROW LEVEL SECURITY",
			"ALTER TABLE " + s + ".notes FORCE ROW LEVEL SECURITY",
			"CREATE POLICY tenant_isolation ON " + s + ".notes USING (" + policy + ") WITH CHECK (" + policy + ")",
			"GRANT USAGE ON SCHEMA " + s + " TO " + app,
			"GRANT SELECT, INSERT, UPDATE, DELETE ON " + s + ".notes TO " + app,
		} {
			if _, err := owner.Exec(ctx, sql); err != nil {
				panic(err)
			}
		}
	}
	return pg.AppURL, acme, globex
}

func ExampleNew() {
	appURL, _, _ := exampleSetup()
	ctx := context.Background()

	cfg, err := pgxpool.ParseConfig(appURL)
	if err != nil {
		panic(err)
	}
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	// Without a tenant in the context nothing runs.
	_, err = pool.Exec(ctx, "SELECT 1")
	fmt.Println(err)
	// Output: tenant: no tenant in context
}

func ExamplePool_Query() {
	appURL, acme, globex := exampleSetup()
	cfg, _ := pgxpool.ParseConfig(appURL)
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	// The same SQL for both tenants: the context decides whose rows it sees.
	for _, t := range []tenant.Tenant{acme, globex} {
		ctx := tenant.NewContext(context.Background(), t)
		if _, err := pool.Exec(ctx, "INSERT INTO notes (body) VALUES ($1)", "hello from "+t.Slug[:4]); err != nil {
			panic(err)
		}
	}
	for _, t := range []tenant.Tenant{acme, globex} {
		ctx := tenant.NewContext(context.Background(), t)
		rows, _ := pool.Query(ctx, "SELECT body FROM notes")
		bodies, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			panic(err)
		}
		fmt.Println(bodies)
	}
	// Output:
	// [hello from acme]
	// [hello from glob]
}

func ExamplePool_BeginTx() {
	appURL, acme, _ := exampleSetup()
	cfg, _ := pgxpool.ParseConfig(appURL)
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	ctx := tenant.NewContext(context.Background(), acme)

	// BEGIN and the tenant's settings go in one round trip; pgx.BeginFunc
	// commits, or rolls back on error.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, body := range []string{"first", "second"} {
			if _, err := tx.Exec(ctx, "INSERT INTO notes (body) VALUES ($1)", body); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil {
		panic(err)
	}
	fmt.Println(n, "notes")
	// Output: 2 notes
}

func ExampleSessionStateError() {
	appURL, acme, _ := exampleSetup()
	cfg, _ := pgxpool.ParseConfig(appURL)
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	ctx := tenant.NewContext(context.Background(), acme)

	// A session advisory lock would stay on a connection the next tenant
	// gets: it is refused before anything is sent.
	_, err = pool.Exec(ctx, "SELECT pg_advisory_lock(42)")
	var sse *pgtenant.SessionStateError
	if errors.As(err, &sse) {
		fmt.Println("refused:", sse.Construct)
		fmt.Println("instead:", sse.Instead)
	}
	// Its transaction-local form is fine.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(42)")
		return err
	})
	fmt.Println("in a transaction:", err)
	// Output:
	// refused: pg_advisory_lock()
	// instead: pg_advisory_xact_lock in a transaction, or a connection from Pool.Acquire (its session is reset on release)
	// in a transaction: <nil>
}

// A pgx tracer on the pool's ConnConfig, here pgx's tracelog, logs every
// tenant statement with the caller's SQL.
func ExamplePool_tracelog() {
	appURL, acme, _ := exampleSetup()
	cfg, _ := pgxpool.ParseConfig(appURL)
	cfg.ConnConfig.Tracer = &tracelog.TraceLog{
		LogLevel: tracelog.LogLevelInfo,
		Logger: tracelog.LoggerFunc(func(ctx context.Context, _ tracelog.LogLevel, msg string, data map[string]any) {
			if t, ok := tenant.FromContext(ctx); ok && msg == "Query" {
				fmt.Printf("%s: %s %v\n", t.Slug[:4], data["sql"], data["commandTag"])
			}
		}),
	}
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	ctx := tenant.NewContext(context.Background(), acme)
	if _, err := pool.Exec(ctx, "INSERT INTO notes (body) VALUES ($1)", "traced"); err != nil {
		panic(err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil {
		panic(err)
	}
	// Output:
	// acme: INSERT INTO notes (body) VALUES ($1) INSERT 0 1
	// acme: SELECT count(*) FROM notes SELECT 1
}
