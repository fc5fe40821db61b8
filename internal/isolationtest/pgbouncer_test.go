package isolationtest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// startPgBouncer runs Debian's pgbouncer in transaction pooling mode in front
// of the package's database, with serverConns server connections, and
// returns its URL for the app role. .ci/run installs pgbouncer.
func startPgBouncer(t *testing.T, pg *testenv.PG, serverConns int) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = "/usr/sbin/pgbouncer"
		if _, statErr := os.Stat(bin); statErr != nil {
			if testenv.RequireServices() {
				t.Fatalf("pgbouncer is not installed (bash .ci/run installs it): %v", err)
			}
			t.Skipf("pgbouncer is not installed: %v", err)
		}
	}
	app, err := pgx.ParseConfig(pg.AppURL)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// pgbouncer refuses to run as root; it drops to the postgres user, which
	// must be able to reach the configuration and write its log (t.TempDir's
	// parent is private to this user).
	dir, err := os.MkdirTemp("", "tenancy-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ini := fmt.Sprintf(`[databases]
tenancy = host=%s port=%d dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 200
logfile = %s
pidfile = %s
ignore_startup_parameters = extra_float_digits
`, app.Host, app.Port, app.Database, port, filepath.Join(dir, "users.txt"), serverConns, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	for name, content := range map[string]string{"pgbouncer.ini": ini, "users.txt": fmt.Sprintf("%q %q\n", app.User, app.Password)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "postgres"}, args...)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/tenancy?sslmode=disable", app.User, app.Password, port)
	for i := 0; ; i++ {
		conn, err := pgx.Connect(context.Background(), url)
		if err == nil {
			conn.Close(context.Background())
			return url
		}
		if i == 50 {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer did not answer: %v\n%s\n%s", err, out.String(), log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPgBouncerTransactionMode runs 24 clients over 20 tenants through
// PgBouncer in transaction mode with three server connections, interleaving
// statements and transactions: every row any of them sees is its own.
func TestPgBouncerTransactionMode(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	url := startPgBouncer(t, pg, 3)
	ctx := context.Background()
	reg, _ := docsRegistry(t, pg, serialDocs)
	tenants := createTenants(t, reg, "pgb", 20)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	// Behind a transaction pooler, nothing may be prepared on a server
	// connection: statements go as one Parse/Bind/Execute batch each.
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.MaxConns = 24
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	var foreign, ops, failures atomic.Int64
	var wg sync.WaitGroup
	for c := range 24 {
		wg.Go(func() {
			for i := range 30 {
				tn := tenants[(c*7+i*3)%len(tenants)]
				tctx := tenant.NewContext(ctx, tn)
				var err error
				if i%2 == 0 {
					_, err = pool.Exec(tctx, "INSERT INTO docs (body) VALUES ($1)", fmt.Sprintf("c%d-%d", c, i))
					if err == nil {
						var n int64
						err = pool.QueryRow(tctx, "SELECT count(*) FROM docs WHERE tenant_id <> $1", tn.ID).Scan(&n)
						foreign.Add(n)
					}
				} else {
					err = pgx.BeginFunc(tctx, pool, func(tx pgx.Tx) error {
						rows, _ := tx.Query(tctx, "SELECT tenant_id FROM docs")
						ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
						for _, id := range ids {
							if id != tn.ID {
								foreign.Add(1)
							}
						}
						if err != nil {
							return err
						}
						var setting string
						if err := tx.QueryRow(tctx, "SELECT current_setting('app.tenant_id')").Scan(&setting); err != nil {
							return err
						}
						if setting != tn.ID {
							foreign.Add(1)
						}
						return nil
					})
				}
				ops.Add(1)
				if err != nil {
					failures.Add(1)
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if foreign.Load() != 0 {
		t.Errorf("%d cross-tenant observations through PgBouncer", foreign.Load())
	}
	t.Logf("%d operations, %d failures, through 3 server connections", ops.Load(), failures.Load())
}

// TestPgBouncerSessionUseIsUnsafe documents the contrast: session-scoped use
// (Pool.Acquire) sets the tenant for the session, and behind a transaction
// pooler that session state stays on a server connection that the next
// client gets. This is why Acquire is documented as unsafe behind PgBouncer
// in transaction mode; the statement and transaction paths above are safe.
func TestPgBouncerSessionUseIsUnsafe(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	url := startPgBouncer(t, pg, 1) // one server connection: what leaks is seen at once
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg, Mode: pgtenant.SharedTables})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	victim := testenv.Tenant(t, "victim")
	conn, err := pool.Acquire(tenant.NewContext(ctx, victim))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	other, err := pgx.Connect(ctx, url) // another client of the same PgBouncer
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var leaked string
	if err := other.QueryRow(ctx, "SELECT coalesce(current_setting('app.tenant_id', true), '')", pgx.QueryExecModeSimpleProtocol).Scan(&leaked); err != nil {
		t.Fatal(err)
	}
	if leaked != victim.ID {
		t.Errorf("another client saw setting %q; expected the session state of Acquire to leak (%q) through transaction pooling", leaked, victim.ID)
	}
}

// TestPgBouncerSessionStateIsRefused: behind PgBouncer in transaction mode
// (exec mode, as the docs advise) the session state that leaked in the
// previous round — a held cursor, a session advisory lock, a session SET
// reaching other clients, lastval() — is refused on the statement path and
// in transactions, so the next client of the one server connection finds
// none of it.
func TestPgBouncerSessionStateIsRefused(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	url := startPgBouncer(t, pg, 1)
	ctx := context.Background()
	reg, _ := docsRegistry(t, pg, `CREATE TABLE docs (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL)`)
	tenants := createTenants(t, reg, "pgbss", 2)
	a, b := tenant.NewContext(ctx, tenants[0]), tenant.NewContext(ctx, tenants[1])
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(a, "INSERT INTO docs (body) VALUES ('a-secret')"); err != nil {
		t.Fatal(err)
	}
	leaks := []string{
		"DECLARE held CURSOR WITH HOLD FOR SELECT body FROM docs",
		"SELECT pg_advisory_lock(4242)",
		"SET app.tenant_id = '" + tenants[0].ID + "'",
		"SELECT set_config('app.tenant_id', '" + tenants[0].ID + "', false)",
		"SELECT lastval()",
		// The spellings of the session-state issue.
		"SELECT body INTO pg_temp.x FROM docs",
		"CREATE TABLE pg_temp.y AS SELECT body FROM docs",
		`CREATE TABLE U&"pg\005ftemp".z AS SELECT body FROM docs`,
		"EXPLAIN ANALYZE CREATE TEMP TABLE w AS SELECT body FROM docs",
		`SELECT U&"pg_\0061dvisory_lock"(4243)`,
		`SELECT U&"set\005fconfig"('app.tenant_id', '` + tenants[1].ID + `', false)`,
		"UPDATE pg_settings SET setting = 'on' WHERE name = 'default_transaction_read_only'",
		"UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
		// And what outlives the session.
		"ALTER ROLE CURRENT_USER SET statement_timeout = 1",
		"ALTER DATABASE CURRENT SET search_path = public",
	}
	var roleSettings int
	settingsSQL := "SELECT count(*)::int FROM pg_db_role_setting"
	if err := pg.AdminPool(t).QueryRow(ctx, settingsSQL).Scan(&roleSettings); err != nil {
		t.Fatal(err)
	}
	for _, sql := range leaks {
		if _, err := pool.Exec(a, sql); !errors.Is(err, pgtenant.ErrSessionState) {
			t.Errorf("statement path %q: %v, want ErrSessionState", sql, err)
		}
		err := pgx.BeginFunc(a, pool, func(tx pgx.Tx) error { _, err := tx.Exec(a, sql); return err })
		if !errors.Is(err, pgtenant.ErrSessionState) {
			t.Errorf("transaction %q: %v, want ErrSessionState", sql, err)
		}
	}
	// Another client of the same PgBouncer, on the one server connection.
	other, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var cursors, locks, temps int
	var setting, readOnly, scs string
	err = other.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_cursors WHERE name <> '')::int,
		(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::int, coalesce(current_setting('app.tenant_id', true), ''),
		(SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int,
		current_setting('default_transaction_read_only'), current_setting('standard_conforming_strings')`,
		pgx.QueryExecModeSimpleProtocol).Scan(&cursors, &locks, &setting, &temps, &readOnly, &scs)
	if err != nil {
		t.Fatal(err)
	}
	if cursors != 0 || locks != 0 || setting != "" || temps != 0 || readOnly != "off" || scs != "on" {
		t.Errorf("another client finds %d held cursors, %d advisory locks, setting %q, %d temporary relations, default_transaction_read_only %s, standard_conforming_strings %s",
			cursors, locks, setting, temps, readOnly, scs)
	}
	var after int
	if err := pg.AdminPool(t).QueryRow(ctx, settingsSQL).Scan(&after); err != nil || after != roleSettings {
		t.Errorf("pg_db_role_setting rows %d before, %d after (%v)", roleSettings, after, err)
	}
	// Tenant B writes as before on the one server connection.
	if _, err := pool.Exec(b, "INSERT INTO docs (body) VALUES ('b-doc')"); err != nil {
		t.Errorf("tenant B's insert after A's attempts: %v", err)
	}
	// Tenant B and Unscoped read nothing of A's.
	var n int
	if err := pool.QueryRow(b, "SELECT count(*) FROM docs").Scan(&n); err != nil || n != 1 {
		t.Errorf("tenant B counts %d docs (%v)", n, err)
	}
	var id int64
	if err := pool.QueryRow(b, "SELECT lastval()").Scan(&id); !errors.Is(err, pgtenant.ErrSessionState) {
		t.Errorf("tenant B's lastval() = %d, %v", id, err)
	}
}
