package pgtenant_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
)

// sessionState is what a tenant's statement sees of its connection.
type sessionState struct {
	Path, Setting, User string
	Junk                bool // the temp table left by the previous holder
	Backend             int32
}

func readState(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, ctx context.Context) sessionState {
	t.Helper()
	var s sessionState
	err := q.QueryRow(ctx, `SELECT current_setting('search_path'), coalesce(current_setting('app.tenant_id', true), ''),
		current_user::text, to_regclass('pg_temp.junk') IS NOT NULL, pg_backend_pid()`).Scan(&s.Path, &s.Setting, &s.User, &s.Junk, &s.Backend)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Not parallel: it grants a role to the shared app role, and the backstop's
// guard of any connection made before the grant would see the app role's
// memberships change under a checked statement of another test.
func TestAcquireSessionJunkIsGoneForNextTenant(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "junk", 2, 1)
	a, b := tenants[0], tenants[1]
	// A role the app role may SET ROLE to, to leave that behind as well.
	other := pg.Database + "_other"
	admin := pg.AdminPool(t)
	for _, s := range []string{
		"CREATE ROLE " + pgx.Identifier{other}.Sanitize(),
		"GRANT " + pgx.Identifier{other}.Sanitize() + " TO " + pgx.Identifier{pg.AppRole}.Sanitize(),
	} {
		if _, err := admin.Exec(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_, _ = pg.AdminPool(t).Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{other}.Sanitize())
	})
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })

	conn, err := p.Acquire(ctxFor(a))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release() // a second Release is a no-op
	got := readState(t, conn, ctxFor(a))
	if got.Setting != a.ID || got.User != pg.AppRole {
		t.Fatalf("acquired session: %+v", got)
	}
	pid := got.Backend
	for _, s := range []string{
		"SET search_path TO " + pgx.Identifier{pgtenant.SchemaName(b)}.Sanitize(),
		"SET app.tenant_id TO '" + b.ID + "'",
		"CREATE TEMP TABLE junk (x int)",
		"SET ROLE " + pgx.Identifier{other}.Sanitize(),
	} {
		if _, err := conn.Exec(ctxFor(a), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	conn.Release()

	// The next tenant on the only connection, by statement and by session.
	st := readState(t, p, ctxFor(b))
	if st.Backend != pid {
		t.Fatalf("got backend %d, want the reused %d", st.Backend, pid)
	}
	wantPath := fmt.Sprintf(`"%s", "public", pg_temp`, pgtenant.SchemaName(b))
	if diff := cmp.Diff(sessionState{Path: wantPath, Setting: b.ID, User: pg.AppRole, Backend: pid}, st); diff != "" {
		t.Errorf("statement after release (-want +got):\n%s", diff)
	}
	conn, err = p.Acquire(ctxFor(b))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	st = readState(t, conn, ctxFor(b))
	if diff := cmp.Diff(sessionState{Path: wantPath, Setting: b.ID, User: pg.AppRole, Backend: pid}, st); diff != "" {
		t.Errorf("session after release (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want(b, 1), names(t, conn, ctxFor(b), "SELECT name FROM items")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestStatementJunkDoesNotCarryOver(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "sjunk", 2, 1)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	// Session-level state sent through the statement path is refused before
	// any I/O; the next tenant's statement finds nothing of it.
	for _, s := range []string{
		"SET search_path TO " + pgx.Identifier{pgtenant.SchemaName(a)}.Sanitize(),
		"SET app.tenant_id TO '" + a.ID + "'",
		"CREATE TEMP TABLE items (id int, tenant_id text, name text)",
	} {
		if _, err := p.Exec(ctxFor(a), s); !errors.Is(err, pgtenant.ErrSessionState) {
			t.Fatalf("%s: %v, want ErrSessionState", s, err)
		}
	}
	if diff := cmp.Diff(want(b, 1), names(t, p, ctxFor(b), "SELECT name FROM items")); diff != "" {
		t.Errorf("tenant B (-want +got):\n%s", diff)
	}
	if st := readState(t, p, ctxFor(b)); st.Setting != b.ID {
		t.Errorf("setting %q, want %q", st.Setting, b.ID)
	}
}

func TestAcquireReleaseInsideTransactionClosesConn(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "opentx", 2, 1)
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	conn, err := p.Acquire(ctxFor(tenants[0]))
	if err != nil {
		t.Fatal(err)
	}
	pid := readState(t, conn, ctxFor(tenants[0])).Backend
	if _, err := conn.Exec(ctxFor(tenants[0]), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	conn.Release()
	st := readState(t, p, ctxFor(tenants[1]))
	if st.Backend == pid {
		t.Errorf("a connection released inside a transaction was reused")
	}
	if st.Setting != tenants[1].ID {
		t.Errorf("setting %q", st.Setting)
	}
}

func TestPanicWhileHoldingConn(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "panic", 2, 1)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })

	handler := func(work func()) (recovered any) {
		defer func() { recovered = recover() }()
		work()
		return nil
	}
	if r := handler(func() {
		conn, err := p.Acquire(ctxFor(a))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		_, _ = conn.Exec(ctxFor(a), "SET app.tenant_id TO 'leaked'")
		panic("handler bug")
	}); r == nil {
		t.Fatal("no panic")
	}
	if r := handler(func() {
		tx, err := p.Begin(ctxFor(a))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(context.Background()) }()
		_, _ = tx.Exec(ctxFor(a), "INSERT INTO items (name) VALUES ('half-done')")
		panic("handler bug")
	}); r == nil {
		t.Fatal("no panic")
	}
	if diff := cmp.Diff(want(b, 1), names(t, p, ctxFor(b), "SELECT name FROM items")); diff != "" {
		t.Errorf("tenant B after panics (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want(a, 1), names(t, p, ctxFor(a), "SELECT name FROM items")); diff != "" {
		t.Errorf("tenant A: the rolled-back insert is visible (-want +got):\n%s", diff)
	}
}

func TestCancelMidQueryThenReuse(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "cancel", 2, 2)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })

	for _, run := range []func(ctx context.Context) error{
		func(ctx context.Context) error { _, err := p.Exec(ctx, "SELECT pg_sleep(5)"); return err },
		func(ctx context.Context) error {
			rows, _ := p.Query(ctx, "SELECT name, pg_sleep(5) FROM items")
			rows.Close()
			return rows.Err()
		},
		func(ctx context.Context) error {
			tx, err := p.Begin(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback(context.Background()) }()
			_, err = tx.Exec(ctx, "SELECT pg_sleep(5)")
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(ctxFor(a), 100*time.Millisecond)
		err := run(ctx)
		cancel()
		if err == nil {
			t.Fatal("the cancelled statement succeeded")
		}
		if diff := cmp.Diff(want(b, 2), names(t, p, ctxFor(b), "SELECT name FROM items ORDER BY id")); diff != "" {
			t.Errorf("tenant B after A's cancellation (-want +got):\n%s", diff)
		}
	}
}

func TestTerminatedBackendsMidLoad(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "term", 4, 3)
	app := "term-" + testenv.UniqueID("pool") // only this pool's backends get terminated
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig.MaxConns = 4
		c.PoolConfig.ConnConfig.RuntimeParams["application_name"] = app
	})
	admin := pg.AdminPool(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan struct{})
	type result struct{ wrong, failed int }
	results := make(chan result, 8)
	for w := range 8 {
		go func() {
			var r result
			defer func() { results <- r }()
			for i := 0; ctx.Err() == nil; i++ {
				tn := tenants[(w+i)%len(tenants)]
				rows, err := p.Query(ctxFor(tn), "SELECT name FROM items ORDER BY id")
				if err != nil {
					r.failed++
					continue
				}
				got, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					r.failed++
					continue
				}
				if !cmp.Equal(want(tn, 3), got) {
					r.wrong++
				}
			}
		}()
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_, _ = admin.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var total result
	for range 8 {
		r := <-results
		total.wrong += r.wrong
		total.failed += r.failed
	}
	<-done
	if total.wrong != 0 {
		t.Errorf("%d reads returned another tenant's rows", total.wrong)
	}
	if total.failed == 0 {
		t.Errorf("no statement failed: the backends were not terminated, so the test proved nothing")
	}
	t.Logf("%d statements failed with their backend terminated", total.failed)
	// The pool heals: every tenant reads its rows afterwards. A backend
	// the last round terminated while its connection sat idle fails the
	// first statement sent to it (no client can know before it reads), and
	// that connection is destroyed: at most MaxConns such failures.
	for _, tn := range tenants {
		var got []string
		var err error
		for range 5 {
			var rows pgx.Rows
			if rows, err = p.Query(ctxFor(tn), "SELECT name FROM items ORDER BY id"); err == nil {
				got, err = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			if err == nil {
				break
			}
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code != "57P01" {
				t.Fatalf("%s after the load: %v", tn.Slug, err)
			}
		}
		if err != nil {
			t.Fatalf("%s after the load: %v", tn.Slug, err)
		}
		if diff := cmp.Diff(want(tn, 3), got); diff != "" {
			t.Errorf("%s after the load (-want +got):\n%s", tn.Slug, diff)
		}
	}
}
