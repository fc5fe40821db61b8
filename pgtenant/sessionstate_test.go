package pgtenant_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
)

// leftovers is what a session shows of state left on it by earlier users.
type leftovers struct {
	Cursors, AdvisoryLocks, SQLPrepared, Listening, TempTables int
	Path, Setting                                              string
}

const leftoversSQL = `SELECT
	(SELECT count(*) FROM pg_catalog.pg_cursors WHERE name <> '')::int,
	(SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())::int,
	(SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql)::int,
	(SELECT count(*) FROM pg_catalog.pg_listening_channels())::int,
	(SELECT count(*) FROM pg_catalog.pg_class WHERE relpersistence = 't' AND relnamespace = pg_catalog.pg_my_temp_schema())::int,
	current_setting('search_path'), coalesce(current_setting('app.tenant_id', true), '')`

func readLeftovers(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, ctx context.Context) leftovers {
	t.Helper()
	var l leftovers
	if err := q.QueryRow(ctx, leftoversSQL).Scan(&l.Cursors, &l.AdvisoryLocks, &l.SQLPrepared, &l.Listening, &l.TempTables, &l.Path, &l.Setting); err != nil {
		t.Fatal(err)
	}
	return l
}

// sessionStatements are, per class, statements that would leave state on
// the session. Each is refused on the statement path and in transactions.
var sessionStatements = map[string][]string{
	"cursor WITH HOLD": {"DECLARE c CURSOR WITH HOLD FOR SELECT name FROM items", "declare c binary no scroll cursor with hold for select 1"},
	"advisory lock": {"SELECT pg_advisory_lock(42)", "SELECT pg_catalog.pg_try_advisory_lock(1, 2)", `SELECT "pg_advisory_lock_shared" (7)`,
		"SELECT /* pg_advisory_xact_lock(1) */ pg_advisory_lock(1)"},
	"session SET": {"SET app.tenant_id = 'x'", "SET SESSION search_path = public", "set role none", "RESET app.tenant_id",
		"SELECT set_config('app.tenant_id', $1, false)", "SELECT set_config('search_path', 'public', $1)", "SET SESSION AUTHORIZATION DEFAULT"},
	"lastval":      {"SELECT lastval()", "SELECT currval('items_id_seq')"},
	"SQL PREPARE":  {"PREPARE p AS SELECT name FROM items", "EXECUTE tenancy_scope('x')", "DEALLOCATE ALL"},
	"LISTEN":       {"LISTEN chan", "UNLISTEN *"},
	"temp table":   {"CREATE TEMP TABLE junk (x int)", "create temporary table if not exists junk (x int)", "CREATE TABLE pg_temp.junk (x int)", "SELECT 1 AS x INTO TEMP junk", "CREATE TEMP VIEW v AS SELECT 1"},
	"tx control":   {"COMMIT", "BEGIN", "ROLLBACK", "END", "START TRANSACTION", "ABORT"},
	"other":        {"DISCARD ALL", "DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$", "LOAD 'auto_explain'"},
	"multiple":     {"SELECT 1; SET app.tenant_id = 'x'"},
	"quoted names": {`SELECT "lastval"()`, "SELECT pg_catalog . lastval ( )"},
}

// allowedStatements look like session state to a careless reader but leave
// none behind: the lexer must let them through.
var allowedStatements = []string{
	"SELECT 'SET app.tenant_id = 1; pg_advisory_lock(1)' AS s",
	"SELECT $$ LISTEN x $$ AS s",
	"SELECT 1 AS lastval",
	"SELECT set_config('app.other', 'x', true)",
	`SELECT "LASTVAL" FROM (SELECT 1 AS "LASTVAL") s`,
	"SELECT 1 -- ; SET app.tenant_id = 'x'",
	"SELECT 1 /* nested /* ; LISTEN x */ still a comment */",
	"SELECT E'\\'; LISTEN x; ' AS s",
}

func TestSessionStateIsRefused(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "sstate", 2, 1)
	a, b := tenants[0], tenants[1]
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		p := newPool(t, pg, func(c *pgtenant.Config) {
			c.PoolConfig.MaxConns = 1
			c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode
		})
		ctxA := ctxFor(a)
		before := p.Stat().AcquireCount()
		for class, stmts := range sessionStatements {
			for _, sql := range stmts {
				_, err := p.Exec(ctxA, sql)
				var sse *pgtenant.SessionStateError
				if !errors.As(err, &sse) || !errors.Is(err, pgtenant.ErrSessionState) || sse.SQL != sql || sse.Construct == "" || sse.Instead == "" {
					t.Errorf("%v %s: Pool.Exec(%q) = %v, want a *SessionStateError", mode, class, sql, err)
				}
				rows, err := p.Query(ctxA, sql)
				if !errors.Is(err, pgtenant.ErrSessionState) {
					t.Errorf("%v %s: Pool.Query(%q) = %v", mode, class, sql, err)
				}
				rows.Close()
				if err := p.QueryRow(ctxA, sql).Scan(); !errors.Is(err, pgtenant.ErrSessionState) {
					t.Errorf("%v %s: Pool.QueryRow(%q) = %v", mode, class, sql, err)
				}
				batch := &pgx.Batch{}
				batch.Queue("SELECT 1")
				batch.Queue(sql)
				if err := p.SendBatch(ctxA, batch).Close(); !errors.Is(err, pgtenant.ErrSessionState) {
					t.Errorf("%v %s: Pool.SendBatch(%q) = %v", mode, class, sql, err)
				}
			}
		}
		if got := p.Stat().AcquireCount() - before; got != 0 {
			t.Errorf("%v: %d connections acquired for refused statements; they must be refused before any I/O", mode, got)
		}
		// In a transaction too, and the transaction goes on unharmed.
		err := pgx.BeginFunc(ctxA, p, func(tx pgx.Tx) error {
			for class, stmts := range sessionStatements {
				for _, sql := range stmts {
					if _, err := tx.Exec(ctxA, sql); !errors.Is(err, pgtenant.ErrSessionState) {
						t.Errorf("%v %s: Tx.Exec(%q) = %v", mode, class, sql, err)
					}
				}
			}
			_, err := tx.Exec(ctxA, "INSERT INTO items (name) VALUES ($1)", a.Slug+"-2")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, sql := range allowedStatements {
			if _, err := p.Exec(ctxA, sql); err != nil {
				t.Errorf("%v: allowed statement %q: %v", mode, sql, err)
			}
		}
		// Nothing of A's attempts is on the connection for B or Unscoped.
		clean := leftovers{Path: pgx.Identifier{pgtenant.SchemaName(b)}.Sanitize() + `, "public", pg_temp`, Setting: b.ID}
		if diff := cmp.Diff(clean, readLeftovers(t, p, ctxFor(b))); diff != "" {
			t.Errorf("%v: tenant B's session (-want +got):\n%s", mode, diff)
		}
		if diff := cmp.Diff(want(b, 1), names(t, p, ctxFor(b), "SELECT name FROM items ORDER BY id")); diff != "" {
			t.Errorf("%v: tenant B (-want +got):\n%s", mode, diff)
		}
		unscoped := leftovers{Path: `"$user", public`}
		if diff := cmp.Diff(unscoped, readLeftovers(t, p.Unscoped(), context.Background())); diff != "" {
			t.Errorf("%v: Unscoped session (-want +got):\n%s", mode, diff)
		}
		if got := names(t, p.Unscoped(), context.Background(), "SELECT name FROM "+pgx.Identifier{pgtenant.SchemaName(a), "items"}.Sanitize()); len(got) != 0 {
			t.Errorf("%v: Unscoped reads tenant A's rows %v", mode, got)
		}
	}
}

// TestTransactionLocalFormsAreAllowed: the transaction-local forms of the
// refused constructs work in a transaction and are gone after it.
func TestTransactionLocalFormsAreAllowed(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "txlocal", 2, 1)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctxA := ctxFor(a)
	err := pgx.BeginFunc(ctxA, p, func(tx pgx.Tx) error {
		for _, sql := range []string{
			"SET LOCAL statement_timeout = '5s'",
			"SELECT set_config('app.note', 'x', true)",
			"SELECT pg_advisory_xact_lock(42)",
			"DECLARE c CURSOR FOR SELECT name FROM items",
			"CREATE TEMP TABLE scratch ON COMMIT DROP AS SELECT name FROM items",
			"SAVEPOINT s",
			"ROLLBACK TO SAVEPOINT s",
		} {
			if _, err := tx.Exec(ctxA, sql); err != nil {
				return err
			}
		}
		var n string
		if err := tx.QueryRow(ctxA, "SELECT name FROM scratch").Scan(&n); err != nil || n != a.Slug+"-1" {
			t.Errorf("scratch table: %q, %v", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clean := leftovers{Path: pgx.Identifier{pgtenant.SchemaName(b)}.Sanitize() + `, "public", pg_temp`, Setting: b.ID}
	if diff := cmp.Diff(clean, readLeftovers(t, p, ctxFor(b))); diff != "" {
		t.Errorf("tenant B's session (-want +got):\n%s", diff)
	}
	if s := p.Stat(); s.NewConnsCount() != 1 {
		t.Errorf("%d connections opened; allowed forms must not cost the connection", s.NewConnsCount())
	}
}

// TestAcquireLeavesNothingForTheNext: what session use leaves — a cursor WITH
// HOLD, an advisory lock, a session SET, a SQL PREPARE, LISTEN and the
// notifications pgx has already buffered, a temporary table, lastval — is
// gone for the next Acquire, the statement path and Unscoped.
func TestAcquireLeavesNothingForTheNext(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "acqleft", 2, 1)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctxA, ctxB := ctxFor(a), ctxFor(b)
	conn, err := p.Acquire(ctxA)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"DECLARE c CURSOR WITH HOLD FOR SELECT name FROM items",
		"SELECT pg_advisory_lock(42)",
		"PREPARE p AS SELECT name FROM items",
		"LISTEN secrets",
		"NOTIFY secrets, '" + a.ID + "'",
		"CREATE TEMP TABLE junk (x int)",
		"SET app.other = 'x'",
	} {
		if _, err := conn.Exec(ctxA, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// The notification was read with the NOTIFY's result: pgx buffers it.
	pid := conn.Conn().PgConn().PID()
	conn.Release()

	next, err := p.Acquire(ctxB)
	if err != nil {
		t.Fatal(err)
	}
	if got := next.Conn().PgConn().PID(); got != pid {
		t.Fatalf("the next Acquire got backend %d, not %d: the test needs the same connection", got, pid)
	}
	waitCtx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	n, err := next.Conn().WaitForNotification(waitCtx)
	cancel()
	if n != nil {
		t.Errorf("tenant B received tenant A's notification %+v", n)
	} else if !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
		t.Errorf("WaitForNotification: %v", err)
	}
	clean := leftovers{Path: pgx.Identifier{pgtenant.SchemaName(b)}.Sanitize() + `, "public", pg_temp`, Setting: b.ID}
	if diff := cmp.Diff(clean, readLeftovers(t, next, ctxB)); diff != "" {
		t.Errorf("next Acquire (-want +got):\n%s", diff)
	}
	next.Release()
	if diff := cmp.Diff(clean, readLeftovers(t, p, ctxB)); diff != "" {
		t.Errorf("statement path (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(leftovers{Path: `"$user", public`}, readLeftovers(t, p.Unscoped(), context.Background())); diff != "" {
		t.Errorf("Unscoped (-want +got):\n%s", diff)
	}
}
