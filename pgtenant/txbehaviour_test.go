package pgtenant_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// Transactions and sessions as pgx users use them: identity columns,
// commits that keep their connection, Prepare and large objects, a deleted
// tenant, sqlc-shaped helpers, dead connections and batches.

// TestLastvalNeedsNoSequencePrivilege: identity columns work for the app
// role without any sequence privilege, and lastval cannot carry one
// tenant's ids to another session user.
func TestLastvalNeedsNoSequencePrivilege(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "lastval", 2, 0)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	var id int64
	if err := p.QueryRow(ctxFor(a), "INSERT INTO items (name) VALUES ($1) RETURNING id", a.Slug+"-1").Scan(&id); err != nil || id != 1 {
		t.Fatalf("insert: %d, %v", id, err)
	}
	if err := p.QueryRow(ctxFor(b), "SELECT lastval()").Scan(&id); !errors.Is(err, pgtenant.ErrSessionState) {
		t.Errorf("tenant B's lastval(): %v, want ErrSessionState", err)
	}
	var pgErr *pgconn.PgError
	if err := p.Unscoped().QueryRow(context.Background(), "SELECT lastval()").Scan(&id); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("Unscoped lastval() = %d, %v; want permission denied (42501): the app role holds no sequence privilege", id, err)
	}
}

// TestTransactionsCommitAndKeepTheirConnection is the bug of the previous
// round: a one-statement BeginFunc committed nothing, and every transaction
// cost a new connection.
func TestTransactionsCommitAndKeepTheirConnection(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "txkeep", 1, 0)[0]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctx := ctxFor(tn)
	for i := range 50 {
		err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO items (name) VALUES ($1)", tn.Slug+"-"+itoa(i+1))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// One read per transaction, the first of each SQL text cold.
		err = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			var n int
			return tx.QueryRow(ctx, "SELECT count(*) FROM items /* "+itoa(i%3)+" */").Scan(&n)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := names(t, p, ctx, "SELECT name FROM items ORDER BY id"); !cmp.Equal(got, want(tn, 50)) {
		t.Errorf("rows after 50 committed transactions: %v", got)
	}
	if n := p.Stat().NewConnsCount(); n != 1 {
		t.Errorf("%d connections opened for 100 transactions on MaxConns 1, want 1", n)
	}
	// A failed statement aborts the transaction, as in pgx.
	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELEC 1"); err == nil {
		t.Fatal("syntax error accepted")
	}
	var pgErr *pgconn.PgError
	if _, err := tx.Exec(ctx, "INSERT INTO items (name) VALUES ('after')"); !errors.As(err, &pgErr) || pgErr.Code != "25P02" {
		t.Errorf("statement after a failed one: %v, want 25P02", err)
	}
	if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Errorf("Commit: %v, want pgx.ErrTxCommitRollback", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("Exec after Commit: %v, want pgx.ErrTxClosed", err)
	}
	// A savepoint as the first statement.
	err = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		for _, sql := range []string{"SAVEPOINT first", "INSERT INTO items (name) VALUES ('kept')", "RELEASE SAVEPOINT first"} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, p, ctx, "SELECT name FROM items WHERE name = 'kept'"); len(got) != 1 {
		t.Errorf("savepoint as first statement: %v", got)
	}
}

// TestTxPrepareAndLargeObjects: Prepare inside a transaction runs by name and
// is gone afterwards; LargeObjects works before and after the first
// statement.
func TestTxPrepareAndLargeObjects(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "txprep", 2, 1)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctx := ctxFor(a)
	err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		lo := tx.LargeObjects()
		oid, err := lo.Create(ctx, 0)
		if err != nil {
			return err
		}
		if err := lo.Unlink(ctx, oid); err != nil {
			return err
		}
		if _, err := tx.Prepare(ctx, "tenancy_1", "SELECT 1"); err == nil {
			t.Error("Prepare took a name of the pool's own statements")
		}
		if _, err := tx.Prepare(ctx, "names", "SELECT name FROM items ORDER BY id"); err != nil {
			return err
		}
		if diff := cmp.Diff(want(a, 1), names(t, tx, ctx, "names")); diff != "" {
			t.Errorf("prepared by name (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := p.Unscoped().QueryRow(context.Background(), "SELECT count(*) FROM pg_prepared_statements WHERE name = 'names'").Scan(&n); err != nil || n != 0 {
		t.Errorf("statement prepared in A's transaction still on the connection: %d, %v", n, err)
	}
	err = pgx.BeginFunc(ctxFor(b), p, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctxFor(b), "names")
		return err
	})
	if err == nil {
		t.Error("tenant B ran the statement tenant A prepared")
	}
}

// TestDeletedTenantNeverFallsThrough: a request that still holds a deleted
// tenant must fail, on warm, cold and exec-mode pools, on every path, even
// where a shared schema has a table of the same name.
func TestDeletedTenantNeverFallsThrough(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "ghost", 1, 1)[0]
	owner := pg.OwnerPool(t)
	app := pgx.Identifier{pg.AppRole}.Sanitize()
	// A table in public with the tenant table's name, readable by the app.
	table := "ghost_" + strings.ReplaceAll(testenv.UniqueID("t"), "-", "_")
	ident := pgx.Identifier{table}.Sanitize()
	for _, s := range []string{
		"CREATE TABLE " + pgx.Identifier{pgtenant.SchemaName(tn), table}.Sanitize() + " (name text)",
		"GRANT SELECT, INSERT, UPDATE ON " + pgx.Identifier{pgtenant.SchemaName(tn), table}.Sanitize() + " TO " + app,
		"CREATE TABLE public." + ident + " (name text)",
		"INSERT INTO public." + ident + " VALUES ('public-row')",
		"GRANT SELECT, INSERT, UPDATE ON public." + ident + " TO " + app,
	} {
		if _, err := owner.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	ctx := ctxFor(tn)
	sel := "SELECT name FROM " + ident
	pools := map[string]*pgtenant.Pool{}
	for _, name := range []string{"warm", "cold", "exec"} {
		pools[name] = newPool(t, pg, func(c *pgtenant.Config) {
			c.PoolConfig.MaxConns = 1
			if name == "exec" {
				c.PoolConfig.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
			}
		})
	}
	for _, p := range []*pgtenant.Pool{pools["warm"], pools["exec"]} {
		if got := names(t, p, ctx, sel); len(got) != 0 {
			t.Fatalf("before deletion: %v", got)
		}
		err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, "UPDATE "+ident+" SET name = name"); return err })
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := owner.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{pgtenant.SchemaName(tn)}.Sanitize()+" CASCADE"); err != nil {
		t.Fatal(err)
	}
	for name, p := range pools {
		check := func(path string, err error) {
			t.Helper()
			if !errors.Is(err, pgtenant.ErrTenantSchemaMissing) {
				t.Errorf("%s pool, %s: %v, want ErrTenantSchemaMissing", name, path, err)
			}
		}
		rows, err := p.Query(ctx, sel)
		if err == nil {
			got, _ := pgx.CollectRows(rows, pgx.RowTo[string])
			t.Errorf("%s pool: Query read %v", name, got)
		} else {
			check("Query", err)
		}
		var s string
		check("QueryRow", p.QueryRow(ctx, sel).Scan(&s))
		_, err = p.Exec(ctx, "INSERT INTO "+ident+" VALUES ('smuggled')")
		check("Exec", err)
		_, err = p.Exec(ctx, "UPDATE "+ident+" SET name = 'changed'")
		check("Exec UPDATE", err)
		batch := &pgx.Batch{}
		batch.Queue(sel)
		check("SendBatch", p.SendBatch(ctx, batch).Close())
		check("BeginFunc", pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO "+ident+" VALUES ('smuggled')")
			return err
		}))
		if conn, err := p.Acquire(ctx); err == nil {
			conn.Release()
			t.Errorf("%s pool: Acquire succeeded", name)
		} else {
			check("Acquire", err)
		}
		_, err = p.CopyFrom(ctx, pgx.Identifier{table}, []string{"name"}, pgx.CopyFromRows([][]any{{"smuggled"}}))
		check("CopyFrom", err)
	}
	if got := names(t, owner, context.Background(), "SELECT name FROM public."+ident); !cmp.Equal(got, []string{"public-row"}) {
		t.Errorf("public table now holds %v", got)
	}
}

// TestSessionStateThroughPgxHelpers: sqlc-shaped code (a DBTX interface,
// WithTx) on the pool and on a transaction.
func TestSessionStateThroughPgxHelpers(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "sqlc", 1, 2)[0]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctx := ctxFor(tn)
	q := queries{db: p}
	if n, err := q.count(ctx); err != nil || n != 2 {
		t.Fatalf("count on the pool: %d, %v", n, err)
	}
	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	qtx := q.withTx(tx)
	if err := qtx.create(ctx, tn.Slug+"-3"); err != nil {
		t.Fatal(err)
	}
	if n, err := qtx.count(ctx); err != nil || n != 3 {
		t.Errorf("count in the transaction: %d, %v", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := q.count(ctx); err != nil || n != 3 {
		t.Errorf("count after commit: %d, %v", n, err)
	}
}

// dbtx and queries are what sqlc generates for pgx/v5.
type dbtx interface {
	Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
	Query(context.Context, string, ...interface{}) (pgx.Rows, error)
	QueryRow(context.Context, string, ...interface{}) pgx.Row
}

type queries struct{ db dbtx }

func (q queries) withTx(tx pgx.Tx) queries { return queries{db: tx} }

func (q queries) count(ctx context.Context) (int64, error) {
	var n int64
	err := q.db.QueryRow(ctx, "-- name: CountItems :one\nSELECT count(*) FROM items").Scan(&n)
	return n, err
}

func (q queries) create(ctx context.Context, name string) error {
	_, err := q.db.Exec(ctx, "-- name: CreateItem :exec\nINSERT INTO items (name) VALUES ($1)", name)
	return err
}

func itoa(i int) string { return strconv.Itoa(i) }

var _ = pgxpool.Conn{}
var _ tenant.Tenant

// TestCommitAfterTheConnectionDied: a transaction whose first statement was
// cancelled while it ran does not report a successful commit.
func TestCommitAfterTheConnectionDied(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "txdied", 1, 0)[0]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctx := ctxFor(tn)
	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := tx.Exec(short, "INSERT INTO items (name) SELECT 'lost' FROM pg_sleep(2)"); err == nil {
		t.Fatal("Exec cancelled mid-statement succeeded")
	}
	if err := tx.Commit(ctx); err == nil {
		t.Error("Commit reported success for a statement that never ran")
	}
	if got := names(t, p, ctx, "SELECT name FROM items"); len(got) != 0 {
		t.Errorf("rows %v", got)
	}
}

// TestTransactionEndedOutsideCommit: a COMMIT sent on the raw connection
// (which nothing classifies) ends the server's transaction; from then on the
// Tx, and its savepoints, refuse to run statements outside the scope.
func TestTransactionEndedOutsideCommit(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "txlost", 1, 1)[0]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctx := ctxFor(tn)
	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Conn().Exec(ctx, "COMMIT", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Exec(ctx, "SELECT name FROM items"); !errors.Is(err, pgtenant.ErrTxLost) {
		t.Errorf("savepoint Exec: %v, want ErrTxLost", err)
	}
	if err := sp.Commit(ctx); !errors.Is(err, pgtenant.ErrTxLost) {
		t.Errorf("savepoint Commit: %v, want ErrTxLost", err)
	}
	if _, err := tx.Exec(ctx, "SELECT name FROM items"); !errors.Is(err, pgtenant.ErrTxLost) {
		t.Errorf("Exec: %v, want ErrTxLost", err)
	}
	if err := tx.Commit(ctx); !errors.Is(err, pgtenant.ErrTxLost) {
		t.Errorf("Commit: %v, want ErrTxLost", err)
	}
	if got := names(t, p, ctx, "SELECT name FROM items"); !cmp.Equal(got, want(tn, 1)) {
		t.Errorf("after the lost transaction: %v", got)
	}
}

// TestBatchesOnTransactionsAndSessions: behind a pooler (exec mode) a
// transaction's batch prepares nothing; on an Acquired Conn a batch may hold
// session statements, which the release resets.
func TestBatchesOnTransactionsAndSessions(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "tbatch", 2, 1)
	a, b := tenants[0], tenants[1]
	ctx := ctxFor(a)
	exec := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig.MaxConns = 1
		c.PoolConfig.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	})
	var got []string
	err := pgx.BeginFunc(ctx, exec, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		batch.Queue("INSERT INTO items (name) VALUES ($1)", a.Slug+"-2")
		batch.Queue("SELECT name FROM items ORDER BY id").Query(func(rows pgx.Rows) error {
			var err error
			got, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want(a, 2), got); diff != "" {
		t.Errorf("batch in the transaction (-want +got):\n%s", diff)
	}
	var prepared int
	if err := exec.Unscoped().QueryRow(context.Background(), "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'tenancy%'",
		pgx.QueryExecModeSimpleProtocol).Scan(&prepared); err != nil || prepared != 0 {
		t.Errorf("exec mode: %d statements prepared by the pool (%v), want none", prepared, err)
	}

	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	conn, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch := &pgx.Batch{}
	batch.Queue("LISTEN tbatch")
	batch.Queue("SELECT pg_advisory_lock(7)")
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		t.Errorf("session statements in a batch on an Acquired Conn: %v", err)
	}
	conn.Release()
	clean := leftovers{Path: pgx.Identifier{pgtenant.SchemaName(b)}.Sanitize() + `, "public", pg_temp`, Setting: b.ID}
	if diff := cmp.Diff(clean, readLeftovers(t, p, ctxFor(b))); diff != "" {
		t.Errorf("after the Conn's release (-want +got):\n%s", diff)
	}
}
