package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/migrate"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// recorder is a pgx tracer that keeps the SQL of every query.
type recorder struct {
	mu  sync.Mutex
	sql []string
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sql = append(r.sql, d.SQL)
	return ctx
}

func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// parseCases are goose SQL files the fleet runner applies itself: each
// shape of goose's grammar it must split exactly as goose does.
var parseCases = map[string]string{
	"plain":                    "-- +goose Up\nCREATE TABLE a (tenant_id text NOT NULL, v int);\nINSERT INTO a VALUES ('x', 1);\n\n-- +goose Down\nDROP TABLE a;\n",
	"comments and blank lines": "-- leading comment\n\n-- +goose Up\n-- about a\n\nCREATE TABLE a (\n  tenant_id text NOT NULL, -- the tenant\n  v int -- value; not the end\n);\n\n-- between\nCREATE INDEX a_v ON a (v);   -- trailing comment\n",
	"block":                    "-- +goose Up\nCREATE TABLE a (tenant_id text NOT NULL, v int);\n-- +goose StatementBegin\nCREATE FUNCTION bump(x int) RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  x := x + 1;\n  RETURN x;\nEND;\n$$;\n-- +goose StatementEnd\nSELECT bump(1);\n",
	"down blocks":              "-- +goose Up\nCREATE TABLE a (tenant_id text NOT NULL);\n-- +goose Down\n-- +goose StatementBegin\nDO $$ BEGIN DROP TABLE a; END $$;\n-- +goose StatementEnd\n",
	"case and spacing":         "--   +goose   up\nCREATE TABLE a (tenant_id text NOT NULL);\n--+goose statementbegin\nCREATE VIEW a_view AS SELECT * FROM a;\n--+goose statementend\n",
	"statement over lines":     "-- +goose Up\nCREATE TABLE a\n(\n  tenant_id text NOT NULL,\n  note text DEFAULT 'semi; colon'\n)\n;\nUPDATE a\n  SET note = 'x'\n  WHERE false;\n",
}

// TestParseUpMatchesGoose runs each parse case through goose on a schema of
// its own and records, with a pgx tracer, the statements goose executes:
// the fleet runner's parser must produce exactly those, in order. Files the
// runner must leave to goose are recognised as such.
func TestParseUpMatchesGoose(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	owner := pg.OwnerPool(t)
	for name, src := range parseCases {
		t.Run(name, func(t *testing.T) {
			stmts, fast, why := migrate.ParseUp(src)
			if !fast {
				t.Fatalf("not fast (%s); the runner would leave it to goose", why)
			}
			schema := "parse_" + strings.ToLower(testenv.NewTenant("p").Slug)
			if _, err := owner.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
				t.Fatal(err)
			}
			defer owner.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			cc, err := pgx.ParseConfig(pg.OwnerURL)
			if err != nil {
				t.Fatal(err)
			}
			cc.RuntimeParams["search_path"] = schema
			rec := &recorder{}
			cc.Tracer = rec
			db := stdlib.OpenDB(*cc)
			defer db.Close()
			p, err := goose.NewProvider(goose.DialectPostgres, db, fstest.MapFS{"00001_case.sql": {Data: []byte(src)}},
				goose.WithTableName(schema+".goose_db_version"), goose.WithDisableGlobalRegistry(true))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Up(ctx); err != nil {
				t.Fatal(err)
			}
			var ran []string
			for _, s := range rec.sql {
				low := strings.ToLower(strings.TrimSpace(s))
				if strings.Contains(s, "goose_db_version") || strings.Contains(s, "pg_tables") ||
					low == "begin" || low == "commit" || low == "rollback" || strings.HasPrefix(low, "begin ") {
					continue // goose's bookkeeping and database/sql's transaction
				}
				ran = append(ran, s)
			}
			if len(ran) == 0 {
				t.Fatal("recorded no migration statement: the oracle saw nothing")
			}
			if diff := cmp.Diff(ran, stmts); diff != "" {
				t.Errorf("statements (-goose +runner):\n%s", diff)
			}
		})
	}
	for name, src := range map[string]string{
		"no transaction":            "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY i ON a (v);\n",
		"envsub":                    "-- +goose ENVSUB ON\n-- +goose Up\nCREATE TABLE ${T} (tenant_id text);\n",
		"two statements in a block": "-- +goose Up\n-- +goose StatementBegin\nCREATE TABLE a (tenant_id text); CREATE TABLE b (tenant_id text);\n-- +goose StatementEnd\n",
		"unknown annotation":        "-- +goose Up\n-- +goose Sideways\nCREATE TABLE a (tenant_id text);\n",
		"no up":                     "CREATE TABLE a (tenant_id text);\n",
		"unfinished block":          "-- +goose Up\n-- +goose StatementBegin\nCREATE TABLE a (tenant_id text);\n",
		"missing semicolon":         "-- +goose Up\nCREATE TABLE a (tenant_id text)\n",
		"commit":                    "-- +goose Up\nCREATE TABLE a (tenant_id text);\nCOMMIT;\nCREATE TABLE b (tenant_id text);\n",
		"savepoint":                 "-- +goose Up\nSAVEPOINT s;\nCREATE TABLE a (tenant_id text);\n",
	} {
		if _, fast, _ := migrate.ParseUp(src); fast {
			t.Errorf("%s: the runner would apply it; goose must", name)
		}
	}
}

// fastChain is a chain of files the fleet runner applies itself.
func fastChain() fstest.MapFS {
	return fstest.MapFS{
		"00001_items.sql": {Data: []byte("-- +goose Up\nCREATE TABLE items (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, qty int NOT NULL);\n-- +goose Down\nDROP TABLE items;\n")},
		"00002_more.sql": {Data: []byte(parseCases["comments and blank lines"] + "\nALTER TABLE items ADD COLUMN note text NOT NULL DEFAULT '';\nCREATE INDEX items_qty ON items (qty);\n" +
			"-- +goose Down\nDROP INDEX items_qty;\nALTER TABLE items DROP COLUMN note;\nDROP TABLE a;\n")},
		"00003_func.sql": {Data: []byte("-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION item_total() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT coalesce(sum(qty), 0) FROM items; $$;\n-- +goose StatementEnd\n" +
			"CREATE VIEW big_items AS SELECT * FROM items WHERE qty > 10;\n-- +goose Down\nDROP VIEW big_items;\nDROP FUNCTION item_total();\n")},
	}
}

// snapshot is what a tenant schema holds, with its name and tenant ID
// replaced, so two tenants' schemas compare equal when built alike.
type snapshot struct {
	Columns, Indexes, Policies, Security, Grants, Functions, Views []string
	Versions                                                       []string
}

func snapshotOf(t *testing.T, pg *testenv.PG, tn tenant.Tenant) snapshot {
	t.Helper()
	schema := pgtenant.SchemaName(tn)
	ctx := context.Background()
	conn := pg.OwnerPool(t)
	norm := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, schema, "<schema>"), tn.ID, "<id>")
	}
	list := func(q string) []string {
		rows, err := conn.Query(ctx, q, schema)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			vals, err := r.Values()
			return norm(fmt.Sprint(vals...)), err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return snapshot{
		Columns: list(`SELECT table_name, column_name, data_type, coalesce(column_default, ''), is_nullable
			FROM information_schema.columns WHERE table_schema = $1 ORDER BY 1, ordinal_position`),
		Indexes:  list(`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY 1`),
		Policies: list(`SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies WHERE schemaname = $1 ORDER BY 1, 2`),
		Security: list(`SELECT relname, relkind, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relnamespace = to_regnamespace(quote_ident($1)) ORDER BY 1`),
		Grants: list(`SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants
			WHERE table_schema = $1 AND grantee <> current_user ORDER BY 1, 2, 3`),
		Functions: list(`SELECT proname, pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = to_regnamespace(quote_ident($1)) ORDER BY 1`),
		Views:     list(`SELECT viewname, definition FROM pg_views WHERE schemaname = $1 ORDER BY 1`),
		Versions: list(`SELECT version_id, is_applied FROM ` + pgx.Identifier{schema, "goose_db_version"}.Sanitize() +
			` WHERE $1::text IS NOT NULL ORDER BY id`),
	}
}

// TestRunnerMatchesGoose applies one chain to two tenants through the fleet
// runner and to two through goose, and compares what each schema holds —
// columns, indexes, policies, RLS flags, grants, functions, views and
// goose's version rows — with go-cmp. goose then reads the runner's schemas:
// every version applied, nothing left to do.
func TestRunnerMatchesGoose(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "equiv", 4)
	ctx := context.Background()
	m := newMigrator(t, pg, fastChain(), nil)
	runner, viaGoose := tenants[:2], tenants[2:]
	for _, tn := range viaGoose {
		if r := m.UpTenant(ctx, tn); r.Err != nil || !r.ViaGoose || r.To != 3 {
			t.Fatalf("UpTenant: %+v", r)
		}
	}
	// One tenant from nothing, one from version 1 (goose made its table).
	if r := m.UpTo(ctx, runner[1], 1); r.Err != nil {
		t.Fatal(r.Err)
	}
	rep, err := m.UpAll(ctx, source(tenants))
	if err != nil || rep.Err() != nil || rep.Migrated != 2 || rep.Skipped != 2 {
		t.Fatalf("UpAll: %+v, %v, %v", rep, err, rep.Err())
	}
	for _, r := range rep.Results {
		if r.ViaGoose || r.To != 3 {
			t.Errorf("%s: %+v, want the fleet runner to take it to 3", r.Tenant.Slug, r)
		}
	}
	want := snapshotOf(t, pg, viaGoose[0])
	if len(want.Policies) == 0 || len(want.Grants) == 0 || len(want.Versions) != 4 {
		t.Fatalf("goose's schema is not what the test expects: %+v", want)
	}
	if diff := cmp.Diff(want, snapshotOf(t, pg, viaGoose[1])); diff != "" {
		t.Fatalf("two goose schemas differ:\n%s", diff)
	}
	for _, tn := range runner {
		if diff := cmp.Diff(want, snapshotOf(t, pg, tn)); diff != "" {
			t.Errorf("%s (-goose +runner):\n%s", tn.Slug, diff)
		}
		// goose reads the runner's work as its own.
		db := stdlib.OpenDB(*pgxConfig(t, pg))
		p, err := goose.NewProvider(goose.DialectPostgres, db, fastChain(),
			goose.WithTableName(pgtenant.SchemaName(tn)+".goose_db_version"), goose.WithDisableGlobalRegistry(true))
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.State != goose.StateApplied {
				t.Errorf("%s: goose says version %d is %s", tn.Slug, s.Source.Version, s.State)
			}
		}
		if res, err := p.Up(ctx); err != nil || len(res) != 0 {
			t.Errorf("%s: goose Up after the runner applied %d (%v), want nothing", tn.Slug, len(res), err)
		}
		db.Close()
	}
	// The tenant data path works on the runner's schemas.
	pool := appPool(t, pg)
	for _, tn := range runner {
		var total int64
		if _, err := pool.Exec(ctxFor(tn), "INSERT INTO items (qty) VALUES (20)"); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctxFor(tn), "SELECT item_total()").Scan(&total); err != nil || total != 20 {
			t.Errorf("%s: item_total %d, %v", tn.Slug, total, err)
		}
	}
}

func pgxConfig(t *testing.T, pg *testenv.PG) *pgx.ConnConfig {
	t.Helper()
	cc, err := pgx.ParseConfig(pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// TestRunnerRollsBackAFailingTenant: under the fleet runner a tenant whose
// second pending migration fails keeps none of them (one transaction), the
// other tenants are migrated, and a rerun after the fix completes it.
func TestRunnerRollsBackAFailingTenant(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "rollback", 3)
	chain := badChain()
	// Version 2 passes for everyone; version 3 fails for the bad tenant.
	chain["00002_positive.sql"] = &fstest.MapFile{Data: []byte("-- +goose Up\nALTER TABLE items ADD COLUMN extra2 int;\n")}
	chain["00003_more.sql"] = &fstest.MapFile{Data: []byte("-- +goose Up\nALTER TABLE items ADD COLUMN extra int;\nALTER TABLE items ADD CONSTRAINT qty_positive CHECK (qty > 0);\n")}
	m := newMigrator(t, pg, chain, nil)
	ctx := context.Background()
	bad := tenants[1]
	for _, tn := range tenants {
		if r := m.UpTo(ctx, tn, 1); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	pool := appPool(t, pg)
	if _, err := pool.Exec(ctxFor(bad), "INSERT INTO items (qty) VALUES (-1)"); err != nil {
		t.Fatal(err)
	}
	rep, err := m.UpAll(ctx, source(tenants))
	if err != nil || rep.Migrated != 2 || rep.Failed != 1 {
		t.Fatalf("UpAll: %+v, %v", rep, err)
	}
	var me *migrate.MigrationError
	if err := rep.Err(); !errors.As(err, &me) || me.Tenant != bad || me.Version != 3 ||
		!strings.Contains(err.Error(), "statement 2") || !strings.Contains(err.Error(), "qty_positive") {
		t.Errorf("report error: %v; want version 3, statement 2, the constraint", err)
	}
	for _, r := range rep.Results {
		if r.ViaGoose {
			t.Errorf("%s went through goose", r.Tenant.Slug)
		}
	}
	columns := func(tn tenant.Tenant) []string {
		rows, _ := pg.OwnerPool(t).Query(ctx, `SELECT column_name::text FROM information_schema.columns
			WHERE table_schema = $1 AND table_name = 'items' ORDER BY ordinal_position`, pgtenant.SchemaName(tn))
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return cols
	}
	if diff := cmp.Diff([]string{"id", "tenant_id", "qty"}, columns(bad)); diff != "" {
		t.Errorf("the failed tenant kept part of its migrations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"id", "tenant_id", "qty", "extra2", "extra"}, columns(tenants[0])); diff != "" {
		t.Errorf("a good tenant (-want +got):\n%s", diff)
	}
	statuses, _ := m.Status(ctx, source(tenants))
	for _, s := range statuses {
		if want := map[bool]int64{true: 1, false: 3}[s.Tenant == bad]; s.Current != want {
			t.Errorf("%s at %d, want %d", s.Tenant.Slug, s.Current, want)
		}
	}
	if _, err := pool.Exec(ctxFor(bad), "UPDATE items SET qty = 1"); err != nil {
		t.Fatal(err)
	}
	rep, err = m.UpAll(ctx, source(tenants))
	if err != nil || rep.Err() != nil || rep.Migrated != 1 || rep.Skipped != 2 {
		t.Fatalf("rerun: %+v, %v, %v", rep, err, rep.Err())
	}
	if diff := cmp.Diff(columns(tenants[0]), columns(bad)); diff != "" {
		t.Errorf("after the rerun (-good +fixed):\n%s", diff)
	}
}

// TestRunnerRefusesUnconfinedTables: a new table the securing step refuses
// rolls the tenant's whole migration back under the fleet runner — the
// table does not exist afterwards — with the sentinel naming it.
func TestRunnerRefusesUnconfinedTables(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "refuse", 1)
	for name, c := range map[string]struct {
		file string
		want error
	}{
		"no tenant_id": {"CREATE TABLE leaky (v int);", migrate.ErrMissingTenantColumn},
		"serial":       {"CREATE TABLE counters (id serial, tenant_id text NOT NULL);", migrate.ErrSequenceDefault},
		"own policy": {"CREATE TABLE mine (tenant_id text NOT NULL);\nALTER TABLE mine ENABLE ROW LEVEL SECURITY;\nCREATE POLICY open ON mine USING (true);",
			migrate.ErrForeignPolicy},
	} {
		chain := fstest.MapFS{
			"00001_ok.sql":  {Data: []byte("-- +goose Up\nCREATE TABLE ok_table (tenant_id text NOT NULL, v int);\n")},
			"00002_bad.sql": {Data: []byte("-- +goose Up\n" + c.file + "\n")},
		}
		m := newMigrator(t, pg, chain, nil)
		rep, err := m.UpAll(context.Background(), source(tenants))
		if err != nil || len(rep.Results) != 1 {
			t.Fatalf("%s: %+v, %v", name, rep, err)
		}
		r := rep.Results[0]
		if !errors.Is(r.Err, c.want) || r.ViaGoose || r.To != 0 {
			t.Errorf("%s: %+v, want %v from the runner at version 0", name, r, c.want)
		}
		var n int
		if err := pg.OwnerPool(t).QueryRow(context.Background(), "SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace(quote_ident($1))",
			pgtenant.SchemaName(tenants[0])).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d relations left in the schema (%v), want none", name, n, err)
		}
	}
}

// TestRunnerHandsDriftToGoose: a schema whose goose table moved since the
// summary was written (goose run by hand) is handed to goose, which brings
// it to the latest version; the others go through the runner.
func TestRunnerHandsDriftToGoose(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "handoff", 2)
	ctx := context.Background()
	m := newMigrator(t, pg, fastChain(), nil)
	for _, tn := range tenants {
		if r := m.UpTo(ctx, tn, 1); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if st, err := m.Status(ctx, source(tenants)); err != nil || st[0].Current != 1 || st[1].Current != 1 {
		t.Fatalf("the summary should say 1 for both: %+v, %v", st, err)
	}
	drifted := tenants[0]
	cc := pgxConfig(t, pg)
	cc.RuntimeParams["search_path"] = pgtenant.SchemaName(drifted)
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	// By hand, without the securing step: table a has no policy yet.
	p, err := goose.NewProvider(goose.DialectPostgres, db, fastChain(),
		goose.WithTableName(pgtenant.SchemaName(drifted)+".goose_db_version"), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	rep, err := m.UpAll(ctx, source(tenants))
	if err != nil || rep.Err() != nil || rep.Migrated != 2 {
		t.Fatalf("UpAll: %+v, %v, %v", rep, err, rep.Err())
	}
	for _, r := range rep.Results {
		if wantGoose := r.Tenant == drifted; r.ViaGoose != wantGoose || r.To != 3 {
			t.Errorf("%s: %+v; want ViaGoose %v, version 3", r.Tenant.Slug, r, wantGoose)
		}
	}
	if diff := cmp.Diff(snapshotOf(t, pg, tenants[1]), snapshotOf(t, pg, drifted)); diff != "" {
		t.Errorf("(-runner +handed to goose):\n%s", diff)
	}
}

// TestRunnerWithoutSecureFunction: in a database without provision's
// securing function the runner takes two round trips in one explicit
// transaction — the migrations and the relations query, then rls.Plan's
// statements, the summary and COMMIT — and builds what goose builds. A
// refused table rolls the tenant back, and the worker's connection goes on
// to the next tenant cleanly.
func TestRunnerWithoutSecureFunction(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t).NewDatabase(t)
	tenants := fleet(t, pg, "nofunc", 5)
	ctx := context.Background()
	if _, err := pg.AdminPool(t).Exec(ctx, "DROP FUNCTION tenancy.secure_schema(text, text, text, text, text[])"); err != nil {
		t.Fatal(err)
	}
	m := newMigrator(t, pg, fastChain(), nil)
	viaGoose, runner := tenants[0], tenants[1:3]
	if r := m.UpTenant(ctx, viaGoose); r.Err != nil {
		t.Fatal(r.Err)
	}
	rep, err := m.UpAll(ctx, source(runner))
	if err != nil || rep.Err() != nil || rep.Migrated != 2 {
		t.Fatalf("UpAll: %+v, %v, %v", rep, err, rep.Err())
	}
	want := snapshotOf(t, pg, viaGoose)
	for _, r := range rep.Results {
		if r.ViaGoose || r.To != 3 {
			t.Errorf("%s: %+v, want the runner to take it to 3", r.Tenant.Slug, r)
		}
		if diff := cmp.Diff(want, snapshotOf(t, pg, r.Tenant)); diff != "" {
			t.Errorf("%s (-goose +runner):\n%s", r.Tenant.Slug, diff)
		}
	}
	pool := appPool(t, pg)
	if _, err := pool.Exec(ctxFor(runner[0]), "INSERT INTO items (qty) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctxFor(runner[1]), "SELECT count(*) FROM "+pgx.Identifier{pgtenant.SchemaName(runner[0]), "items"}.Sanitize()).Scan(&n); err != nil || n != 0 {
		t.Errorf("tenant 1 reads %d of tenant 0's rows (%v)", n, err)
	}

	// A refused table: the tenant keeps nothing, the next tenant on the same
	// worker is migrated.
	bad := fstest.MapFS{
		"00001_ok.sql":  {Data: []byte("-- +goose Up\nCREATE TABLE ok_table (tenant_id text NOT NULL, v int);\n")},
		"00002_bad.sql": {Data: []byte("-- +goose Up\nCREATE TABLE leaky (v int);\n")},
	}
	mb := newMigrator(t, pg, bad, func(c *migrate.Config) { c.Concurrency = 1 })
	rep, err = mb.UpAll(ctx, source(tenants[3:4]))
	if err != nil || len(rep.Results) != 1 {
		t.Fatalf("UpAll: %+v, %v", rep, err)
	}
	if r := rep.Results[0]; !errors.Is(r.Err, migrate.ErrMissingTenantColumn) || r.ViaGoose || !strings.Contains(r.Err.Error(), "leaky") {
		t.Errorf("refused table: %+v", r)
	}
	if err := pg.OwnerPool(t).QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace(quote_ident($1))",
		pgtenant.SchemaName(tenants[3])).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d relations left after the refusal (%v)", n, err)
	}
	ok := newMigrator(t, pg, fstest.MapFS{"00001_ok.sql": bad["00001_ok.sql"]}, func(c *migrate.Config) { c.Concurrency = 1 })
	rep, err = ok.UpAll(ctx, source(tenants[3:5]))
	if err != nil || rep.Err() != nil || rep.Migrated != 2 {
		t.Errorf("after a refusal: %+v, %v, %v", rep, err, rep.Err())
	}
	// A statement that fails in the first round trip: each tenant on the
	// one worker fails with its own error, not an aborted transaction left
	// by the one before.
	failing := fstest.MapFS{"00001_ok.sql": bad["00001_ok.sql"],
		"00002_fails.sql": {Data: []byte("-- +goose Up\nALTER TABLE ok_table ADD COLUMN w int;\nSELECT 1/0;\n")}}
	mf := newMigrator(t, pg, failing, func(c *migrate.Config) { c.Concurrency = 1 })
	rep, err = mf.UpAll(ctx, source(tenants[3:5]))
	if err != nil || rep.Failed != 2 {
		t.Fatalf("UpAll: %+v, %v", rep, err)
	}
	for _, r := range rep.Results {
		if r.ViaGoose || r.To != 1 || !strings.Contains(fmt.Sprint(r.Err), "division by zero") || !strings.Contains(fmt.Sprint(r.Err), "statement 2") {
			t.Errorf("%s: %+v", r.Tenant.Slug, r)
		}
	}
}

// TestRunnerWaitsForTheSchemaLock: while goose holds a schema's lock, the
// runner polls and reports ErrSchemaLocked when its context ends; once the
// lock is free it finds the schema migrated and does nothing twice.
func TestRunnerWaitsForTheSchemaLock(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := fleet(t, pg, "runlock", 1)[0]
	chain := fstest.MapFS{
		"00001_slow.sql": {Data: []byte("-- +goose Up\nCREATE TABLE slow (tenant_id text NOT NULL);\nSELECT pg_sleep(1.6);\n")},
	}
	m := newMigrator(t, pg, chain, nil)
	ctx := context.Background()
	if _, err := m.Status(ctx, source([]tenant.Tenant{tn})); err != nil {
		t.Fatal(err)
	}
	first := make(chan migrate.TenantResult, 1)
	go func() { first <- m.UpTenant(ctx, tn) }()
	waitForQuery(t, pg, "pg_sleep(1.6)") // TestLockedSchema sleeps 1.5: not a substring
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	rep, _ := m.UpAll(wctx, source([]tenant.Tenant{tn}))
	if len(rep.Results) != 1 || !errors.Is(rep.Results[0].Err, migrate.ErrSchemaLocked) || rep.Results[0].ViaGoose {
		t.Errorf("UpAll while locked: %+v, want the runner's ErrSchemaLocked", rep.Results)
	}
	if res := <-first; res.Err != nil || res.To != 1 {
		t.Fatalf("first migration: %+v", res)
	}
	// The summary still says 0 for this UpAll's Status? No: UpTenant wrote
	// 1. Force the stale case: the runner must still not apply it twice.
	if _, err := pg.OwnerPool(t).Exec(ctx, "UPDATE tenancy.migrate_versions SET version = 0 WHERE schema_name = $1", pgtenant.SchemaName(tn)); err != nil {
		t.Fatal(err)
	}
	rep, err := m.UpAll(ctx, source([]tenant.Tenant{tn}))
	if err != nil || rep.Err() != nil {
		t.Fatalf("UpAll after: %v, %v", err, rep.Err())
	}
	var rows int
	if err := pg.OwnerPool(t).QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{pgtenant.SchemaName(tn), "goose_db_version"}.Sanitize()+
		" WHERE version_id = 1").Scan(&rows); err != nil || rows != 1 {
		t.Errorf("version 1 recorded %d times (%v)", rows, err)
	}
}

// TestRunnerSchemaMissing: a tenant whose schema is gone fails with
// ErrSchemaMissing under the fleet runner; the others are migrated.
func TestRunnerSchemaMissing(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := fleet(t, pg, "gone", 2)
	ctx := context.Background()
	if _, err := pg.OwnerPool(t).Exec(ctx, "DROP SCHEMA "+pgx.Identifier{pgtenant.SchemaName(tenants[0])}.Sanitize()+" CASCADE"); err != nil {
		t.Fatal(err)
	}
	m := newMigrator(t, pg, fastChain(), nil)
	rep, err := m.UpAll(ctx, source(tenants))
	if err != nil || rep.Migrated != 1 || rep.Failed != 1 {
		t.Fatalf("UpAll: %+v, %v", rep, err)
	}
	for _, r := range rep.Results {
		if r.ViaGoose {
			t.Errorf("%s went through goose", r.Tenant.Slug)
		}
		if r.Tenant == tenants[0] && (!errors.Is(r.Err, migrate.ErrSchemaMissing) || !strings.Contains(r.Err.Error(), pgtenant.SchemaName(tenants[0]))) {
			t.Errorf("dropped schema: %v, want ErrSchemaMissing naming it", r.Err)
		}
	}
}

// TestRunnerConcurrentUpAll: two UpAll passes over one fleet at once, both
// through the fleet runner, apply every migration exactly once: the loser
// of a schema's lock waits, then finds the schema moved and leaves it to
// goose, which has nothing to do.
func TestRunnerConcurrentUpAll(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	upAllTwiceAtOnce(t, pg, fastChain(), fleet(t, pg, "runconc", 6), 3)
}
