package pgtenant_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/tracelog"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/provision/provisiontest"
	"github.com/tenancykit/tenancy/tenant"
)

func ExampleNew() {
	// Two tenants, acme and globex, each with a notes table confined by row
	// level security, in a throwaway database (provisiontest: an
	// administrator from $TENANCY_TEST_ADMIN_URL or local postgres).
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	cfg, err := pgxpool.ParseConfig(env.AppURL)
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
	// Two tenants, acme and globex, each with a notes table confined by row
	// level security, in a throwaway database (provisiontest: an
	// administrator from $TENANCY_TEST_ADMIN_URL or local postgres).
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	acme, globex := env.Tenants[0].Tenant(), env.Tenants[1].Tenant()
	cfg, _ := pgxpool.ParseConfig(env.AppURL)
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	// The same SQL for both tenants: the context decides whose rows it sees.
	for _, t := range []tenant.Tenant{acme, globex} {
		ctx := tenant.NewContext(context.Background(), t)
		if _, err := pool.Exec(ctx, "INSERT INTO notes (body) VALUES ($1)", "hello from "+t.Slug); err != nil {
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
	// [hello from globex]
}

func ExamplePool_BeginTx() {
	// Two tenants, acme and globex, each with a notes table confined by row
	// level security, in a throwaway database (provisiontest: an
	// administrator from $TENANCY_TEST_ADMIN_URL or local postgres).
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	acme := env.Tenants[0].Tenant()
	cfg, _ := pgxpool.ParseConfig(env.AppURL)
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
	// Two tenants, acme and globex, each with a notes table confined by row
	// level security, in a throwaway database (provisiontest: an
	// administrator from $TENANCY_TEST_ADMIN_URL or local postgres).
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	acme := env.Tenants[0].Tenant()
	cfg, _ := pgxpool.ParseConfig(env.AppURL)
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
	// Two tenants, acme and globex, each with a notes table confined by row
	// level security, in a throwaway database (provisiontest: an
	// administrator from $TENANCY_TEST_ADMIN_URL or local postgres).
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	acme := env.Tenants[0].Tenant()
	cfg, _ := pgxpool.ParseConfig(env.AppURL)
	cfg.ConnConfig.Tracer = &tracelog.TraceLog{
		LogLevel: tracelog.LogLevelInfo,
		Logger: tracelog.LoggerFunc(func(ctx context.Context, _ tracelog.LogLevel, msg string, data map[string]any) {
			if t, ok := tenant.FromContext(ctx); ok && msg == "Query" {
				fmt.Printf("%s: %s %v\n", t.Slug, data["sql"], data["commandTag"])
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

func ExampleOpenDB() {
	// Two tenants, acme and globex, each with a notes table confined by row
	// level security, in a throwaway database (provisiontest: an
	// administrator from $TENANCY_TEST_ADMIN_URL or local postgres).
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	cfg, _ := pgxpool.ParseConfig(env.AppURL)
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	// database/sql code (or sqlx, bun, GORM on top of it) uses the tenant of
	// each call's context, as the pool's own methods do.
	db := pgtenant.OpenDB(pool)
	defer db.Close()
	for _, t := range []tenant.Tenant{env.Tenants[0].Tenant(), env.Tenants[1].Tenant()} {
		ctx := tenant.NewContext(context.Background(), t)
		if _, err := db.ExecContext(ctx, "INSERT INTO notes (body) VALUES ($1)", "hello from "+t.Slug); err != nil {
			panic(err)
		}
		var body string
		if err := db.QueryRowContext(ctx, "SELECT body FROM notes").Scan(&body); err != nil {
			panic(err)
		}
		fmt.Println(body)
	}
	_, err = db.ExecContext(context.Background(), "DELETE FROM notes")
	fmt.Println(err)
	// Output:
	// hello from acme
	// hello from globex
	// tenant: no tenant in context
}

// sqlcNotes is what sqlc generates for pgx/v5 (trimmed): a DBTX interface, a
// Queries struct over it, WithTx for transactions.
type sqlcNotes struct {
	db interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
		QueryRow(context.Context, string, ...any) pgx.Row
	}
}

func (q *sqlcNotes) WithTx(tx pgx.Tx) *sqlcNotes { return &sqlcNotes{db: tx} }

func (q *sqlcNotes) CreateNote(ctx context.Context, body string) error {
	_, err := q.db.Exec(ctx, "INSERT INTO notes (body) VALUES ($1)", body)
	return err
}

func (q *sqlcNotes) CountNotes(ctx context.Context) (n int64, err error) {
	err = q.db.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n)
	return n, err
}

func Example_sqlc() {
	// Two tenants, acme and globex, each with a notes table confined by row
	// level security, in a throwaway database (provisiontest: an
	// administrator from $TENANCY_TEST_ADMIN_URL or local postgres).
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	cfg, _ := pgxpool.ParseConfig(env.AppURL)
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	// sqlc's generated code takes the pool as its DBTX, and its WithTx takes
	// the pool's transactions: nothing to adapt.
	q := &sqlcNotes{db: pool}
	acme := tenant.NewContext(context.Background(), env.Tenants[0].Tenant())
	globex := tenant.NewContext(context.Background(), env.Tenants[1].Tenant())
	_ = q.CreateNote(acme, "one")
	err = pgx.BeginFunc(acme, pool, func(tx pgx.Tx) error {
		return q.WithTx(tx).CreateNote(acme, "two")
	})
	if err != nil {
		panic(err)
	}
	nAcme, _ := q.CountNotes(acme)
	nGlobex, _ := q.CountNotes(globex)
	fmt.Println("acme:", nAcme, "globex:", nGlobex)
	// Output: acme: 2 globex: 0
}

func ExampleCitusMode() {
	// On a Citus coordinator, where provision makes each tenant schema a
	// distributed schema, the zero Config (CitusAuto) turns Citus mode on by
	// itself and application code stays as it is. CitusOn forces it; here it
	// runs on plain PostgreSQL (a throwaway database from provisiontest),
	// where its transaction blocks change nothing a program sees.
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(env.AppURL)
	if err != nil {
		panic(err)
	}
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg, Citus: pgtenant.CitusOn})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	acme, _ := env.Registry.LookupTenant(ctx, "acme")
	actx := tenant.NewContext(ctx, acme)
	// Each statement runs as BEGIN, the scope, SET LOCAL of the tenant (which
	// Citus forwards to the worker that holds the schema), the statement and
	// COMMIT — one round trip.
	if _, err := pool.Exec(actx, "INSERT INTO notes (tenant_id, body) VALUES ($1, 'hello')", acme.ID); err != nil {
		panic(err)
	}
	var body string
	var setting bool
	if err := pool.QueryRow(actx, "SELECT body, current_setting('app.tenant_id') = $1 FROM notes", acme.ID).Scan(&body, &setting); err != nil {
		panic(err)
	}
	fmt.Println(body, setting)

	// The simple protocol cannot carry the tenant to the workers: refused.
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	_, err = pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg, Citus: pgtenant.CitusOn})
	fmt.Println(errors.Is(err, pgtenant.ErrInvalidConfig))
	// Output:
	// hello true
	// true
}

func ExampleTenantLimits() {
	env, cleanup, err := provisiontest.Start(context.Background(), provisiontest.Options{
		Slugs:   []string{"acme", "globex"},
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)`),
	})
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		panic(err)
	}
	acme, globex := env.Tenants[0].Tenant(), env.Tenants[1].Tenant()
	cfg, _ := pgxpool.ParseConfig(env.AppURL)
	// Every tenant may hold 2 connections; acme's tier 1, refusing more at
	// once, and its statements may run for 50 ms.
	pool, err := pgtenant.New(context.Background(), pgtenant.Config{
		PoolConfig: cfg,
		TenantLimits: &pgtenant.TenantLimits{
			Default: pgtenant.Limits{MaxConns: 2},
			For: func(t tenant.Tenant) (pgtenant.Limits, bool) {
				if t == acme {
					return pgtenant.Limits{MaxConns: 1, OnLimit: pgtenant.LimitFail, StatementTimeout: 50 * time.Millisecond}, true
				}
				return pgtenant.Limits{}, false
			},
		},
	})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	actx := tenant.NewContext(context.Background(), acme)

	tx, err := pool.Begin(actx) // acme's one connection
	if err != nil {
		panic(err)
	}
	_, err = pool.Exec(actx, "SELECT 1")
	fmt.Println("acme, second connection:", errors.Is(err, pgtenant.ErrTenantLimit))
	_, err = pool.Exec(tenant.NewContext(context.Background(), globex), "SELECT 1")
	fmt.Println("globex meanwhile:", err)
	_ = tx.Rollback(actx)

	_, err = pool.Exec(actx, "SELECT pg_sleep(1)")
	var pgErr *pgconn.PgError
	fmt.Println("acme, a slow statement:", errors.As(err, &pgErr) && pgErr.Code == "57014")
	// Output:
	// acme, second connection: true
	// globex meanwhile: <nil>
	// acme, a slow statement: true
}
