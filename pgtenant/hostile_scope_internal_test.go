package pgtenant

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/tenant"
)

func ctxFor(tn tenant.Tenant) context.Context { return tenant.NewContext(context.Background(), tn) }

// TestTenantSettingCannotBeWritten: inside tenant A's transaction, no
// statement may point the RLS setting (or the search_path) at tenant B — not
// SET LOCAL, not set_config in any spelling — and where the lexer misses
// one, the guard rolls the transaction back: B's rows are neither read nor
// written. With no defense the same program reads B's rows, which shows the
// test can fail.
func TestTenantSettingCannotBeWritten(t *testing.T) {
	t.Parallel()
	env := setupHostile(t)
	bItems := pgx.Identifier{SchemaName(env.b), "items"}.Sanitize()
	writes := []string{
		"SET LOCAL app.tenant_id = '{b}'",
		`SET LOCAL "app.tenant_id" TO '{b}'`,
		"SET LOCAL app . tenant_id = '{b}'",
		"SELECT set_config('app.tenant_id', '{b}', true)",
		"SELECT pg_catalog.set_config('app.tenant_id', '{b}', true)",
		`SELECT "set_config"('APP.TENANT_ID', '{b}', true)`,
		`SELECT U&"set\005fconfig"('app.tenant_id', '{b}', true)`,
		`SELECT set_config(U&'app.tenant\005fid', '{b}', true)`,
		"SELECT set_config($$app.tenant_id$$, '{b}', true)",
		"SELECT set_config(lower('APP.TENANT_ID'), '{b}', true)",
		"SET LOCAL search_path = {bschema}",
		"SET LOCAL SCHEMA '{bschema}'",
		"RESET app.tenant_id",
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		for _, citus := range []CitusMode{CitusOff, CitusOn} {
			if citus == CitusOn && mode == pgx.QueryExecModeSimpleProtocol {
				continue // refused by New
			}
			p := env.pool(t, mode, citus)
			for _, w := range writes {
				w := env.expand(t, p, w)
				for _, d := range []defense{fullDefense, backstopOnly, noDefense} {
					plant(p, w, d)
					var read string
					var readErr, writeErr error
					err := pgx.BeginFunc(ctxFor(env.a), p, func(tx pgx.Tx) error {
						_, setErr := tx.Exec(ctxFor(env.a), w)
						readErr = tx.QueryRow(ctxFor(env.a), "SELECT coalesce(string_agg(name, ','), '') FROM "+bItems).Scan(&read)
						_, writeErr = tx.Exec(ctxFor(env.a), "INSERT INTO "+bItems+" (tenant_id, name) VALUES ('"+env.b.ID+"', 'planted')")
						return errors.Join(setErr, readErr, writeErr)
					})
					var planted int
					if qerr := env.admin.QueryRow(context.Background(), "SELECT count(*) FROM "+bItems+" WHERE name = 'planted'").Scan(&planted); qerr != nil {
						t.Fatal(qerr)
					}
					if d == noDefense {
						if w == "RESET app.tenant_id" || strings.Contains(w, "search_path") || strings.Contains(w, "SCHEMA") || strings.Contains(w, "lower(") || strings.Contains(w, "APP.TENANT") {
							// Harmless or not an attack on RLS in B's table
							// once unrefused: nothing to show here.
						} else if read == "" {
							t.Errorf("%v/%v %q with no defense: read %q, planted %d; the test cannot fail", mode, citus, w, read, planted)
						}
						if _, err := env.admin.Exec(context.Background(), "DELETE FROM "+bItems+" WHERE name = 'planted'"); err != nil {
							t.Fatal(err)
						}
						continue
					}
					if read != "" || planted != 0 {
						t.Errorf("%v/%v %q (defense %v): tenant A read %q from B's table and planted %d rows (error %v)", mode, citus, w, d, read, planted, err)
					}
					if d == fullDefense && !errors.Is(err, ErrSessionState) {
						t.Errorf("%v/%v %q: error %v, want ErrSessionState", mode, citus, w, err)
					}
					if err == nil {
						t.Errorf("%v/%v %q (defense %v): the transaction committed", mode, citus, w, d)
					}
				}
			}
			// One statement that writes the setting and reads B's rows at once.
			one := "SELECT set_config('app.tenant_id', $1, true), (SELECT string_agg(name, ',') FROM " + bItems + ")"
			for _, d := range []defense{fullDefense, backstopOnly} {
				plant(p, one, d)
				var id string
				var read *string
				err := p.QueryRow(ctxFor(env.a), one, env.b.ID).Scan(&id, &read)
				if err == nil {
					t.Errorf("%v/%v one statement (defense %v): read %v with no error", mode, citus, d, read)
				}
				if d == fullDefense && read != nil {
					t.Errorf("%v/%v one statement: read %q", mode, citus, *read)
				}
			}
			p.Close()
		}
	}
}

// TestBeyondTheSession: statements whose effect outlives the session —
// the app role's or the database's settings, roles, grants of roles,
// default privileges — are refused on every path, an Acquired Conn
// included; where the lexer misses one, the guard rolls it back, and
// pg_db_role_setting is unchanged; with no defense the role's setting
// sticks (and a new connection of every tenant would inherit it).
func TestBeyondTheSession(t *testing.T) {
	t.Parallel()
	env := setupHostile(t)
	stmts := []string{
		"ALTER ROLE CURRENT_USER SET statement_timeout = '7min'",
		"alter user current_user set search_path = {bschema}",
		`/* x */ ALTER ROLE SESSION_USER SET default_transaction_read_only = on`,
		"ALTER ROLE CURRENT_USER IN DATABASE {db} SET statement_timeout = '7min'",
		"ALTER DATABASE {db} SET statement_timeout = '7min'",
		"ALTER SYSTEM SET work_mem = '1MB'",
		"CREATE ROLE hostile_escalation",
		"CREATE USER hostile_escalation",
		"GRANT pg_read_all_data TO CURRENT_USER",
		"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
		"SECURITY LABEL ON TABLE items IS 'x'",
		"CREATE TABLE public.hostile (a int)",
		"DROP TABLE {bschema}.items",
		"DROP OWNED BY CURRENT_USER",
		"REASSIGN OWNED BY CURRENT_USER TO postgres",
	}
	p := env.pool(t, pgx.QueryExecModeCacheStatement, CitusOff)
	for _, s := range stmts {
		s := env.expand(t, p, s)
		for pathName, send := range paths {
			if err := send(ctxFor(env.a), p, s); !errors.Is(err, ErrSessionState) {
				t.Errorf("%q via %s: %v, want ErrSessionState", s, pathName, err)
			}
		}
		conn, err := p.Acquire(ctxFor(env.a))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctxFor(env.a), s); !errors.Is(err, ErrSessionState) {
			t.Errorf("%q via an Acquired Conn: %v, want ErrSessionState", s, err)
		}
		conn.Release()
	}
	for _, s := range stmts[:4] {
		s := env.expand(t, p, s)
		plant(p, s, backstopOnly)
		_, err := p.Exec(ctxFor(env.a), s)
		if !errors.Is(err, ErrSessionState) {
			t.Errorf("%q with the backstop alone: %v, want ErrSessionState", s, err)
		}
		if diff := cmp.Diff(env.baseline, env.state(t, p)); diff != "" {
			t.Errorf("%q with the backstop alone (-before +after):\n%s", s, diff)
		}
	}
	s := env.expand(t, p, stmts[0])
	plant(p, s, noDefense)
	if _, err := p.Exec(ctxFor(env.a), s); err != nil {
		t.Fatal(err)
	}
	if got := env.state(t, p); got.RoleSettings == "" {
		t.Error("with no defense ALTER ROLE left no setting: the test cannot fail")
	}
	env.clean(t)
}
