package pgtenant_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// sqlNames reads the item names db shows the tenant of ctx.
func sqlNames(t *testing.T, db *sql.DB, ctx context.Context) []string {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SELECT name FROM items ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOpenDBIsolation: through database/sql, each tenant reads and writes
// exactly its own rows, statements and transactions alike; no tenant is an
// error before any I/O; a transaction stays in the tenant it began in; a
// rolled-back transaction leaves nothing; a statement database/sql prepared
// runs in the tenant of each execution.
func TestOpenDBIsolation(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "sqldb", 2, 2)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, nil)
	db := pgtenant.OpenDB(p)
	defer db.Close()
	db.SetMaxOpenConns(2)

	for _, tn := range tenants {
		if diff := cmp.Diff(want(tn, 2), sqlNames(t, db, ctxFor(tn))); diff != "" {
			t.Errorf("%s reads (-want +got):\n%s", tn.Slug, diff)
		}
	}
	res, err := db.ExecContext(ctxFor(a), "UPDATE items SET name = name || '!'")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 2 {
		t.Errorf("RowsAffected: %d, %v; want 2 (tenant a's rows only)", n, err)
	}
	if diff := cmp.Diff(want(b, 2), sqlNames(t, db, ctxFor(b))); diff != "" {
		t.Errorf("tenant b after a's update (-want +got):\n%s", diff)
	}

	// No tenant: refused, for statements, queries, transactions.
	if _, err := db.ExecContext(context.Background(), "DELETE FROM items"); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("ExecContext without a tenant: %v", err)
	}
	if _, err := db.QueryContext(context.Background(), "SELECT name FROM items"); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("QueryContext without a tenant: %v", err)
	}
	if _, err := db.BeginTx(context.Background(), nil); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("BeginTx without a tenant: %v", err)
	}

	// A committed transaction, its statements in its tenant; another
	// tenant's context inside it is refused.
	tx, err := db.BeginTx(ctxFor(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctxFor(b), "INSERT INTO items (name) VALUES ($1)", b.Slug+"-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctxFor(a), "DELETE FROM items"); !errors.Is(err, pgtenant.ErrTenantMismatch) {
		t.Errorf("a's context in b's transaction: %v, want ErrTenantMismatch", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	// A rolled-back one leaves nothing.
	tx, err = db.BeginTx(ctxFor(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(context.Background(), "INSERT INTO items (name) VALUES ('ghost')"); err != nil {
		t.Fatal(err) // the transaction carries its tenant: a bare context is fine inside it
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(b, 3), sqlNames(t, db, ctxFor(b))); diff != "" {
		t.Errorf("tenant b (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{a.Slug + "-1!", a.Slug + "-2!"}, sqlNames(t, db, ctxFor(a))); diff != "" {
		t.Errorf("tenant a (-want +got):\n%s", diff)
	}

	// A read-only serializable transaction refuses a write.
	tx, err = db.BeginTx(ctxFor(a), &sql.TxOptions{Isolation: sql.LevelSerializable, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctxFor(a), "DELETE FROM items"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("write in a read-only transaction: %v", err)
	}
	_ = tx.Rollback()

	// A prepared statement runs in each execution's tenant.
	stmt, err := db.PrepareContext(ctxFor(a), "SELECT count(*) FROM items WHERE name LIKE $1")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	for tn, wantN := range map[tenant.Tenant]int{a: 2, b: 3} {
		var n int
		if err := stmt.QueryRowContext(ctxFor(tn), "%").Scan(&n); err != nil || n != wantN {
			t.Errorf("prepared count for %s: %d, %v; want %d", tn.Slug, n, err, wantN)
		}
	}

	// Session state is refused as on the Pool; named arguments are refused.
	if _, err := db.ExecContext(ctxFor(a), "SET search_path TO public"); !errors.Is(err, pgtenant.ErrSessionState) {
		t.Errorf("SET through database/sql: %v, want ErrSessionState", err)
	}
	if _, err := db.ExecContext(ctxFor(a), "SELECT $1::int", sql.Named("n", 1)); err == nil || !strings.Contains(err.Error(), "named argument") {
		t.Errorf("named argument: %v", err)
	}
	// A failing statement is the query's error; the next one works.
	if _, err := db.QueryContext(ctxFor(a), "SELECT 1/0"); err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Errorf("failing query: %v", err)
	}
	if got := sqlNames(t, db, ctxFor(a)); len(got) != 2 {
		t.Errorf("after a failing query: %v", got)
	}
}

// TestOpenDBMatchesStdlib reads one row of many types through OpenDB and
// through pgx's own database/sql driver (stdlib, on a pool whose
// connections carry the tenant's settings as session parameters), scanning
// into []any: the values are the same. It also shows that a statement
// outside a transaction sends no BEGIN (one round trip with the scope).
func TestOpenDBMatchesStdlib(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "sqltypes", 1, 2)[0]
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) { openDBMatchesStdlib(t, pg, tn, mode) })
	}
}

func openDBMatchesStdlib(t *testing.T, pg *testenv.PG, tn tenant.Tenant, mode pgx.QueryExecMode) {
	rec := &recorder{}
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig.ConnConfig.Tracer = rec
		c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode
	})
	db := pgtenant.OpenDB(p)
	defer db.Close()
	oracle := stdlib.OpenDBFromPool(tenantSessionPool(t, pg, tn, mode, nil))
	defer oracle.Close()

	const q = `SELECT id, id::int2, id::int4, id::float4 / 3, id::float8 / 3, id > 1, name, name::bytea,
		1.25::numeric, '7f9c24e8-3b12-4fef-91fd-3a6d8c2a3f00'::uuid, '2024-02-29'::date,
		'2024-02-29 12:34:56.789'::timestamp, '2024-02-29 12:34:56.789+02'::timestamptz, '1 day 02:00'::interval,
		'{"a": [1, 2]}'::json, '{"a": [1, 2]}'::jsonb, ARRAY[id, NULL, 3], '10.1.2.3/8'::inet, NULL::text,
		'infinity'::date, 42::oid
		FROM items WHERE id = $1`
	scan := func(db *sql.DB, ctx context.Context) []any {
		t.Helper()
		rows, err := db.QueryContext(ctx, q, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		types, _ := rows.ColumnTypes()
		if !rows.Next() {
			t.Fatalf("no row: %v", rows.Err())
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out := []any{cols}
		for _, ct := range types {
			out = append(out, ct.DatabaseTypeName())
		}
		return append(out, vals...)
	}
	ctx := ctxFor(tn)
	if diff := cmp.Diff(scan(oracle, context.Background()), scan(db, ctx)); diff != "" {
		t.Errorf("values (-stdlib +pgtenant):\n%s", diff)
	}
	if _, err := db.ExecContext(ctx, "UPDATE items SET name = name WHERE id = $1", 1); err != nil {
		t.Fatal(err)
	}
	if mode == pgx.QueryExecModeSimpleProtocol {
		return // database/sql's result formats go through pgx in a transaction there
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, s := range append(rec.queries, rec.batch...) {
		if strings.Contains(strings.ToLower(s), "begin") {
			t.Errorf("a statement outside a transaction sent BEGIN: %q", s)
		}
	}
}

// TestOpenDBWithSqlx: sqlx, on the *sql.DB from OpenDB, with its struct
// scanning, named statements (rebound to $n) and transactions, two tenants.
func TestOpenDBWithSqlx(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "sqlx", 2, 1)
	a, b := tenants[0], tenants[1]
	db := sqlx.NewDb(pgtenant.OpenDB(newPool(t, pg, nil)), "pgx")
	defer db.Close()
	type item struct {
		ID       int64  `db:"id"`
		TenantID string `db:"tenant_id"`
		Name     string `db:"name"`
	}
	if _, err := db.NamedExecContext(ctxFor(a), "INSERT INTO items (name) VALUES (:name)", map[string]any{"name": "named"}); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTxx(ctxFor(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	var one item
	if err := tx.GetContext(ctxFor(b), &one, "SELECT id, tenant_id, name FROM items ORDER BY id LIMIT 1"); err != nil || one.TenantID != b.ID {
		t.Fatalf("Get in b's transaction: %+v, %v", one, err)
	}
	if _, err := tx.ExecContext(ctxFor(b), "INSERT INTO items (name) VALUES ($1)", "from-tx"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for tn, wantNames := range map[tenant.Tenant][]string{a: {a.Slug + "-1", "named"}, b: {b.Slug + "-1", "from-tx"}} {
		var items []item
		if err := db.SelectContext(ctxFor(tn), &items, "SELECT id, tenant_id, name FROM items ORDER BY id"); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range items {
			if it.TenantID != tn.ID {
				t.Errorf("%s read a row of %s", tn.Slug, it.TenantID)
			}
			got = append(got, it.Name)
		}
		if diff := cmp.Diff(wantNames, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tn.Slug, diff)
		}
	}
	var n int
	if err := db.GetContext(context.Background(), &n, "SELECT count(*) FROM items"); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("sqlx without a tenant: %d, %v", n, err)
	}
}

// TestOpenDBAttacks: a transaction whose context is cancelled midway keeps
// nothing and leaves the pool usable; two tenants interleaved on one
// *sql.Conn each see their own rows; with a Pool of one connection,
// database/sql's calls take turns on it.
func TestOpenDBAttacks(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "sqlatk", 2, 1)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	db := pgtenant.OpenDB(p)
	defer db.Close()

	ctx, cancel := context.WithCancel(ctxFor(a))
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO items (name) VALUES ('cancelled')"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := tx.Commit(); err == nil {
		t.Error("commit after the context was cancelled succeeded")
	}
	if diff := cmp.Diff(want(a, 1), sqlNames(t, db, ctxFor(a))); diff != "" {
		t.Errorf("after a cancelled transaction (-want +got):\n%s", diff)
	}

	// An error mid-transaction aborts it as in pgx: the next statement fails,
	// Commit fails, nothing is kept, and the one server connection is usable.
	tx, err = db.BeginTx(ctxFor(a), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctxFor(a), "INSERT INTO items (name) VALUES ('before-error')"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctxFor(a), "SELECT 1/0"); err == nil {
		t.Fatal("division by zero succeeded")
	}
	if _, err := tx.ExecContext(ctxFor(a), "INSERT INTO items (name) VALUES ('after-error')"); err == nil || !strings.Contains(err.Error(), "25P02") {
		t.Errorf("statement after the error: %v, want the aborted transaction's 25P02", err)
	}
	if err := tx.Commit(); err == nil {
		t.Error("commit of an aborted transaction succeeded")
	}
	if diff := cmp.Diff(want(a, 1), sqlNames(t, db, ctxFor(a))); diff != "" {
		t.Errorf("after an aborted transaction (-want +got):\n%s", diff)
	}

	conn, err := db.Conn(ctxFor(a))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 3 {
		for _, tn := range tenants {
			var names []string
			rows, err := conn.QueryContext(ctxFor(tn), "SELECT name FROM items ORDER BY id")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var n string
				_ = rows.Scan(&n)
				names = append(names, n)
			}
			rows.Close()
			if diff := cmp.Diff(want(tn, 1), names); diff != "" {
				t.Errorf("%s on a shared *sql.Conn (-want +got):\n%s", tn.Slug, diff)
			}
		}
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	// One server connection: a transaction holds it until it ends, then the
	// next call gets it.
	tx, err = db.BeginTx(ctxFor(b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctxFor(b), "UPDATE items SET name = name"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(b, 1), sqlNames(t, db, ctxFor(b))); diff != "" {
		t.Errorf("tenant b (-want +got):\n%s", diff)
	}
	if s := p.Stat(); s.AcquiredConns() != 0 {
		t.Errorf("%d server connections still held", s.AcquiredConns())
	}
}
