package pgtenant

import (
	"context"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/tenant"
)

// TestCommandTagBackstop: a statement that slips past the lexer (simulated
// here by planting a wrong classification) and reports a session-state
// command tag gets its connection closed instead of reused.
func TestCommandTagBackstop(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	cfg := pg.AppConfig(t)
	cfg.MaxConns = 1
	p, err := New(context.Background(), Config{PoolConfig: cfg, Mode: SharedTables})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := tenant.NewContext(context.Background(), testenv.Tenant(t, "backstop"))
	for _, sql := range []string{"SET app.tenant_id = 'leaked'", "LISTEN leaked"} {
		p.classes.m.Store(sql, &class{}) // the lexer "missed" it
		before := p.Stat().NewConnsCount()
		if _, err := p.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		var setting string
		var listening int
		err := p.Unscoped().QueryRow(context.Background(),
			"SELECT coalesce(current_setting('app.tenant_id', true), ''), (SELECT count(*) FROM pg_listening_channels())::int").Scan(&setting, &listening)
		if err != nil {
			t.Fatal(err)
		}
		if setting != "" || listening != 0 {
			t.Errorf("after %q, Unscoped sees setting %q and %d channels", sql, setting, listening)
		}
		if n := p.Stat().NewConnsCount() - before; n != 1 {
			t.Errorf("after %q: %d new connections, want 1 (the used one closed)", sql, n)
		}
	}
}

func TestClassify(t *testing.T) {
	for sql, refused := range map[string]bool{
		"SELECT 1":                                         false,
		"set local work_mem = '1MB'":                       false,
		"SET work_mem = '1MB'":                             true,
		"/* c */ SeT/**/work_mem = 1":                      true,
		"select set_config('a.b', 'c', TRUE)":              false,
		"select set_config('a.b', fn('x', 1), true)":       false,
		"select set_config('a.b', fn('x', true), 1)":       true,
		"select set_config('a.b', 'c', (true))":            true,
		"SELECT $tag$ ; LISTEN x $tag$, $1":                false,
		"SELECT $1; LISTEN x":                              true,
		"SELECT 'it''s'; LISTEN x":                         true,
		"SELECT E'it\\'s; LISTEN x'":                       false,
		`SELECT "a""b"; LISTEN x`:                          true,
		"SELECT 1 -- LISTEN x\n":                           false,
		"declare c cursor without hold for select 1":       false,
		"declare c cursor with hold for select 1":          true,
		"CREATE TABLE t (temp int)":                        true, // DDL
		"CREATE UNLOGGED TABLE t (x int)":                  true, // DDL
		"CREATE GLOBAL TEMPORARY TABLE t (x int)":          true,
		"CREATE TEMP TABLE t (x int) ON COMMIT DROP":       false,
		"SELECT x INTO TEMP t FROM y":                      true,
		"SELECT x INTO t FROM y":                           true, // DDL
		"INSERT INTO pg_temp.t VALUES (1)":                 false,
		"ROLLBACK TO SAVEPOINT s":                          false,
		"ROLLBACK WORK TO s":                               false,
		"ROLLBACK":                                         true,
		"SELECT pg_advisory_xact_lock(1)":                  false,
		"SELECT pg_advisory_lock(1)":                       true,
		"WITH x AS (SELECT 1) SELECT pg_catalog.lastval()": true,
		"": false,
	} {
		if got := classify(sql, testOpts).refused != ""; got != refused {
			t.Errorf("classify(%q) refused = %v, want %v (%q)", sql, got, refused, classify(sql, testOpts).refused)
		}
	}
}

// FuzzClassify: the lexer never panics, and a statement it refuses is
// still refused when more statements follow it or comments surround it.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"SELECT 1", "SET x = 1", "SELECT $a$ x $a$", "SELECT E'\\''", `SELECT "x"`, "/* /* */ */ LISTEN x", "SELECT pg_advisory_lock(1)",
		// The shapes of the session-state issue.
		"SELECT body INTO pg_temp.x FROM docs",
		"EXPLAIN ANALYZE CREATE TEMP TABLE x AS SELECT 1",
		"EXPLAIN (ANALYZE) SELECT 1 INTO TEMP x",
		"CREATE TABLE pg_temp_3.x AS SELECT 1",
		"CREATE TABLE pg_toast_temp_3.x (a int)",
		`CREATE TABLE U&"pg\005ftemp".x AS SELECT 1`,
		`CREATE TABLE U&"pg!005ftemp" UESCAPE '!' .x AS SELECT 1`,
		"CREATE PROCEDURE pg_temp.p() LANGUAGE sql AS 'SELECT 1'",
		"CREATE TYPE pg_temp.t AS (a int)",
		"UPDATE pg_settings SET setting = 'on' WHERE name = 'default_transaction_read_only'",
		"UPDATE pg_catalog.pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
		`SELECT U&"set\005fconfig"('app.tenant_id', $1, false)`,
		`SELECT U&"pg_\0061dvisory_lock"($1)`,
		"SET LOCAL app.tenant_id = 'x'",
		"SELECT set_config('app.tenant_id', $1, true), (SELECT 1)",
		"RESET search_path",
		"ALTER ROLE CURRENT_USER SET statement_timeout = 1",
		"ALTER DATABASE CURRENT SET search_path = public",
		"ALTER SYSTEM SET work_mem = '1MB'",
		"GRANT owner_role TO CURRENT_USER",
		"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
		"SECURITY LABEL ON TABLE t IS 'x'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		c := classify(sql, testOpts)
		if c.refused == "" {
			return
		}
		if classify(sql+";\nSELECT 1", testOpts).refused == "" {
			t.Errorf("%q refused alone but not followed by another statement", sql)
		}
		if classify("SELECT 1;\n"+sql, testOpts).refused == "" {
			t.Errorf("%q refused alone but not after another statement", sql)
		}
	})
}

// TestBatchLayoutMatchesPgconn: the mirror of pgconn.Batch that lets a
// connection reuse its Batch matches the pinned pgx; if pgx changes the
// struct, this fails (and the pool falls back to a Batch per statement).
func TestBatchLayoutMatchesPgconn(t *testing.T) {
	if !batchReusable {
		t.Fatal("pgconn.Batch no longer matches batchLayout: update the mirror in wirebuf.go")
	}
	if sameLayout(reflect.TypeFor[pgconn.Batch](), reflect.TypeFor[pgconn.StatementDescription]()) {
		t.Fatal("sameLayout accepts a different struct")
	}
}

var testOpts = classOpts{setting: DefaultSetting}
