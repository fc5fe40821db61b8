package pgtenant_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// TestDivergentSchemasNeverShareAPlan alternates one statement between a
// tenant whose name column is text and one whose column is an integer, on a
// single connection. Plain pgx caches one plan per SQL text and fails with
// SQLSTATE 0A000 "cached plan must not change result type".
func TestDivergentSchemasNeverShareAPlan(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	owner := pg.OwnerPool(t)
	text, num := testenv.Tenant(t, "div"), testenv.Tenant(t, "div")
	createTenantSchema(t, owner, pg.AppRole, text, "name text NOT NULL", 1)
	createTenantSchema(t, owner, pg.AppRole, num, "name int", 0)
	if _, err := owner.Exec(ctxFor(num), "SELECT 1"); err != nil { // owner pool is plain pgx
		t.Fatal(err)
	}
	insertAs(t, owner, num, "INSERT INTO "+pgx.Identifier{pgtenant.SchemaName(num), "items"}.Sanitize()+" (name) VALUES (42)")

	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	for i := range 4 {
		var s string
		if err := p.QueryRow(ctxFor(text), "SELECT * FROM items").Scan(new(int64), new(string), &s); err != nil || s != text.Slug+"-1" {
			t.Fatalf("round %d, text tenant: %q, %v", i, s, err)
		}
		var n int32
		if err := p.QueryRow(ctxFor(num), "SELECT * FROM items").Scan(new(int64), new(string), &n); err != nil || n != 42 {
			t.Fatalf("round %d, int tenant: %d, %v", i, n, err)
		}
		tx, err := p.Begin(ctxFor(num))
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(ctxFor(num), "SELECT * FROM items").Scan(new(int64), new(string), &n); err != nil || n != 42 {
			t.Fatalf("round %d, int tenant in tx: %d, %v", i, n, err)
		}
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// insertAs runs sql as the owner with t's RLS setting.
func insertAs(t *testing.T, owner interface {
	Begin(context.Context) (pgx.Tx, error)
}, tn tenant.Tenant, sql string) {
	t.Helper()
	ctx := context.Background()
	tx, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", tn.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestMigratedSchemaReprepares changes a column's type under a statement that
// is already prepared for that schema: the next use prepares it afresh.
func TestMigratedSchemaReprepares(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "mig", 1, 1)[0]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctx := ctxFor(tn)
	var id int64
	var name string
	var tid string
	if err := p.QueryRow(ctx, "SELECT * FROM items").Scan(&id, &tid, &name); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, "UPDATE items SET name = name"); err != nil {
		t.Fatal(err)
	}
	const list = "SELECT * FROM items ORDER BY id"
	if rows, err := p.Query(ctx, list); err != nil {
		t.Fatal(err)
	} else {
		rows.Close()
	}
	if _, err := pg.OwnerPool(t).Exec(context.Background(),
		"ALTER TABLE "+pgx.Identifier{pgtenant.SchemaName(tn), "items"}.Sanitize()+" ALTER COLUMN name TYPE varchar(100), ADD COLUMN extra int DEFAULT 7"); err != nil {
		t.Fatal(err)
	}
	// Query is sent once more too: nothing had reached the caller.
	rows, err := p.Query(ctx, list)
	if err != nil {
		t.Fatalf("Query after migration: %v", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil || len(got) != 1 || got[0]["extra"] != int32(7) {
		t.Fatalf("Query after migration: %v, %v", got, err)
	}
	var extra int
	if err := p.QueryRow(ctx, "SELECT * FROM items").Scan(&id, &tid, &name, &extra); err != nil || extra != 7 {
		t.Fatalf("QueryRow after migration: %d, %v", extra, err)
	}
	if _, err := p.Exec(ctx, "UPDATE items SET name = name"); err != nil {
		t.Fatalf("Exec after migration: %v", err)
	}
}

func TestTransactions(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "tx", 2, 1)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 2 })
	ctxA := ctxFor(a)

	err := pgx.BeginFunc(ctxA, p, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctxA, "INSERT INTO items (name) VALUES ($1)", a.Slug+"-2"); err != nil {
			return err
		}
		// A savepoint keeps the scope.
		return pgx.BeginFunc(ctxA, tx, func(inner pgx.Tx) error {
			_, err := inner.Exec(ctxA, "INSERT INTO items (name) VALUES ($1)", a.Slug+"-3")
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(a, 3), names(t, p, ctxA, "SELECT name FROM items ORDER BY id")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// Rolled back work leaves nothing.
	tx, err := p.BeginTx(ctxA, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctxA, "DELETE FROM items"); err != nil {
		t.Fatal(err)
	}
	var iso string
	if err := tx.QueryRow(ctxA, "SHOW transaction_isolation").Scan(&iso); err != nil || iso != "serializable" {
		t.Errorf("isolation %q, %v", iso, err)
	}
	// The transaction belongs to A: B's context is refused.
	if _, err := tx.Exec(ctxFor(b), "SELECT 1"); !errors.Is(err, pgtenant.ErrTenantMismatch) {
		t.Errorf("other tenant's ctx in tx: %v, want ErrTenantMismatch", err)
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(context.Background()); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("second Rollback: %v, want pgx.ErrTxClosed", err)
	}
	if got := names(t, p, ctxA, "SELECT name FROM items ORDER BY id"); len(got) != 3 {
		t.Errorf("rollback lost: %v", got)
	}

	// A batch inside a transaction.
	tx, err = p.Begin(ctxFor(b))
	if err != nil {
		t.Fatal(err)
	}
	batch := &pgx.Batch{}
	batch.Queue("INSERT INTO items (name) VALUES ($1)", b.Slug+"-2")
	var count int
	batch.Queue("SELECT count(*) FROM items").QueryRow(func(r pgx.Row) error { return r.Scan(&count) })
	if err := tx.SendBatch(ctxFor(b), batch).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if count != 2 {
		t.Errorf("count in batch = %d, want 2", count)
	}
	if diff := cmp.Diff(want(b, 2), names(t, p, ctxFor(b), "SELECT name FROM items ORDER BY id")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if s := p.Stat(); s.AcquiredConns() != 0 {
		t.Errorf("%d connections still held after the transactions ended", s.AcquiredConns())
	}
}

func TestSendBatchAndCopyFrom(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "batch", 2, 0)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, nil)

	n, err := p.CopyFrom(ctxFor(a), pgx.Identifier{"items"}, []string{"name"}, pgx.CopyFromRows([][]any{{a.Slug + "-1"}, {a.Slug + "-2"}}))
	if err != nil || n != 2 {
		t.Fatalf("CopyFrom = %d, %v", n, err)
	}
	// COPY into another tenant's table is checked by RLS too.
	_, err = p.CopyFrom(ctxFor(a), pgx.Identifier{pgtenant.SchemaName(b), "items"}, []string{"tenant_id", "name"}, pgx.CopyFromRows([][]any{{b.ID, "smuggled"}}))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("COPY of another tenant's rows: %v, want SQLSTATE 42501", err)
	}

	batch := &pgx.Batch{}
	batch.Queue("INSERT INTO items (name) VALUES (@name)", pgx.NamedArgs{"name": a.Slug + "-3"})
	var got []string
	batch.Queue("SELECT name FROM items ORDER BY id").Query(func(rows pgx.Rows) error {
		var err error
		got, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err := p.SendBatch(ctxFor(a), batch).Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(a, 3), got); diff != "" {
		t.Errorf("batch (-want +got):\n%s", diff)
	}
	if got := names(t, p, ctxFor(b), "SELECT name FROM items"); len(got) != 0 {
		t.Errorf("tenant B sees %v", got)
	}
}

func TestQueryOptions(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "opts", 1, 2)[0]
	p := newPool(t, pg, nil)
	ctx := ctxFor(tn)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeDescribeExec} {
		if diff := cmp.Diff(want(tn, 1), names(t, p, ctx, "SELECT name FROM items WHERE name = $1", mode, tn.Slug+"-1")); diff != "" {
			t.Errorf("%v (-want +got):\n%s", mode, diff)
		}
		if _, err := p.Exec(ctx, "UPDATE items SET name = name WHERE id = $1", mode, 1); err != nil {
			t.Errorf("Exec %v: %v", mode, err)
		}
	}
	if diff := cmp.Diff(want(tn, 1), names(t, p, ctx, "SELECT name FROM items WHERE name = @n", pgx.NamedArgs{"n": tn.Slug + "-1"})); diff != "" {
		t.Errorf("NamedArgs (-want +got):\n%s", diff)
	}
}

// TestPoolerModes runs the isolation check with the exec modes a
// transaction-pooling PgBouncer needs: nothing prepared, one round trip.
func TestPoolerModes(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "pooler", 3, 2)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		p := newPool(t, pg, func(c *pgtenant.Config) {
			c.PoolConfig.MaxConns = 1
			c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode
		})
		for _, tn := range tenants {
			if diff := cmp.Diff(want(tn, 2), names(t, p, ctxFor(tn), "SELECT name FROM items WHERE name <> $1 ORDER BY id", "x")); diff != "" {
				t.Errorf("%v, %s (-want +got):\n%s", mode, tn.Slug, diff)
			}
		}
	}
}

func TestSharedTablesMode(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	owner := pg.OwnerPool(t)
	table := pgx.Identifier{"shared_" + strings.ReplaceAll(testenv.UniqueID("notes"), "-", "_")}.Sanitize()
	policy := "tenant_id = nullif(current_setting('app.tenant_id', true), '')"
	for _, s := range []string{
		"CREATE TABLE " + table + " (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'), body text)",
		"ALTER TABLE " + table + " ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE " + table + " FORCE ROW LEVEL SECURITY",
		"CREATE POLICY p ON " + table + " USING (" + policy + ") WITH CHECK (" + policy + ")",
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + table + " TO " + pgx.Identifier{pg.AppRole}.Sanitize(),
		"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO " + pgx.Identifier{pg.AppRole}.Sanitize(),
	} {
		if _, err := owner.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	p := newPool(t, pg, func(c *pgtenant.Config) { c.Mode = pgtenant.SharedTables; c.PoolConfig.MaxConns = 1 })
	tenants := []tenant.Tenant{testenv.Tenant(t, "pool"), testenv.Tenant(t, "pool"), testenv.Tenant(t, "pool")}
	for _, tn := range tenants {
		for i := 1; i <= 2; i++ {
			if _, err := p.Exec(ctxFor(tn), "INSERT INTO "+table+" (body) VALUES ($1)", fmt.Sprintf("%s-%d", tn.Slug, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tn := range tenants {
		if diff := cmp.Diff(want(tn, 2), names(t, p, ctxFor(tn), "SELECT body FROM "+table+" ORDER BY id")); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tn.Slug, diff)
		}
		var path string
		if err := p.QueryRow(ctxFor(tn), "SELECT current_setting('search_path')").Scan(&path); err != nil || path != `"$user", public` {
			t.Errorf("SharedTables changed search_path to %q (%v)", path, err)
		}
	}
	if _, err := p.Exec(ctxFor(tenants[0]), "INSERT INTO "+table+" (tenant_id, body) VALUES ($1, 'x')", tenants[1].ID); err == nil {
		t.Error("WITH CHECK let tenant 0 insert tenant 1's row")
	}
	if got := names(t, p.Unscoped(), context.Background(), "SELECT body FROM "+table); len(got) != 0 {
		t.Errorf("unscoped read saw %v; with no setting RLS must show nothing", got)
	}
}

func TestStatementCacheIsBounded(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "cap", 3, 1)
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1; c.StatementCacheCapacity = 4 })
	for round := range 3 {
		for _, tn := range tenants {
			for k := range 3 {
				sql := fmt.Sprintf("SELECT name FROM items WHERE %d = %d", k, k)
				if diff := cmp.Diff(want(tn, 1), names(t, p, ctxFor(tn), sql)); diff != "" {
					t.Fatalf("round %d (-want +got):\n%s", round, diff)
				}
			}
		}
	}
	var n int
	conn, err := p.Acquire(ctxFor(tenants[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if err := conn.Conn().QueryRow(context.Background(), "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'tenancy\\_%' AND name NOT IN ('tenancy_scope', 'tenancy_guard', 'tenancy_guard_role', 'tenancy_session')").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 4 {
		t.Errorf("%d tenant statements prepared on the connection, capacity 4", n)
	}
}

// TestFailedScopeRunsNothing makes the scope statement fail (it is
// deallocated behind the pool's back) and checks that the statement sent with
// it did not run, on the statement and the transaction paths alike.
func TestFailedScopeRunsNothing(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "failscope", 1, 0)[0]
	owner := pg.OwnerPool(t)
	table := pgx.Identifier{"probe_" + strings.ReplaceAll(testenv.UniqueID("p"), "-", "_")}.Sanitize()
	for _, s := range []string{
		"CREATE TABLE " + table + " (x int)",
		"GRANT SELECT, INSERT ON " + table + " TO " + pgx.Identifier{pg.AppRole}.Sanitize(),
	} {
		if _, err := owner.Exec(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctx := ctxFor(tn)
	insert := "INSERT INTO public." + table + " VALUES (1)"
	// Prepare the insert for the tenant, then break the scope statement on
	// the only connection.
	if _, err := p.Exec(ctx, insert); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Unscoped().Exec(context.Background(), "DEALLOCATE tenancy_scope"); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		var n int
		if err := owner.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	breakScope := func() {
		t.Helper()
		if _, err := p.Unscoped().Exec(context.Background(), "DEALLOCATE tenancy_scope"); err != nil {
			t.Fatal(err)
		}
	}
	var pgErr *pgconn.PgError
	if _, err := p.Exec(ctx, insert); !errors.As(err, &pgErr) || pgErr.Code != "26000" || !strings.Contains(err.Error(), "set scope") {
		t.Errorf("Exec: %v, want the scope statement's failure", err)
	}
	if n := count(); n != 1 {
		t.Errorf("Exec ran behind a failed scope: %d rows", n)
	}
	// The broken connection was closed; the pool's next one works.
	if _, err := p.Exec(ctx, insert); err != nil {
		t.Fatalf("after the failure: %v", err)
	}
	breakScope()
	if err := p.QueryRow(ctx, insert+" RETURNING x").Scan(new(int)); err == nil {
		t.Error("QueryRow: no error")
	}
	if _, err := p.Exec(ctx, "SELECT 1"); err != nil { // heal, prepare on the new connection
		t.Fatal(err)
	}
	breakScope()
	err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, insert)
		return err
	})
	if err == nil {
		t.Error("transaction: no error")
	}
	// Cold: SQL new on the connection is prepared after the scope, in the
	// same round trip; a failed scope prepares and runs nothing.
	for i, run := range []func(sql string) error{
		func(sql string) error { _, err := p.Exec(ctx, sql); return err },
		func(sql string) error {
			return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, sql); return err })
		},
	} {
		if _, err := p.Exec(ctx, "SELECT 1"); err != nil { // heal
			t.Fatal(err)
		}
		breakScope()
		if err := run(fmt.Sprintf("%s /* cold %d */", insert, i)); err == nil {
			t.Errorf("cold path %d: no error", i)
		}
	}
	if n := count(); n != 2 {
		t.Errorf("%d rows, want the 2 inserted while the scope worked", n)
	}
}
