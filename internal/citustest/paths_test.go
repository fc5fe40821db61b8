package citustest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/migrate"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

// querier is what Pool, Tx and Conn share.
type querier interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}

// program writes through every method of q for the tenant of ctx, names
// prefixed with tag, and reads each write back: a read that comes back
// empty or with another tenant's rows fails.
func program(t *testing.T, ctx context.Context, q querier, tag string) {
	t.Helper()
	if _, err := q.Exec(ctx, "INSERT INTO items (name) VALUES ($1)", tag+"-exec"); err != nil {
		t.Fatalf("%s Exec: %v", tag, err)
	}
	var n string
	if err := q.QueryRow(ctx, "INSERT INTO items (name) VALUES ($1) RETURNING name", tag+"-row").Scan(&n); err != nil {
		t.Fatalf("%s QueryRow: %v", tag, err)
	}
	b := &pgx.Batch{}
	b.Queue("INSERT INTO items (name) VALUES ($1)", tag+"-batch1")
	b.Queue("INSERT INTO items (name) VALUES ($1)", tag+"-batch2")
	b.Queue("SELECT count(*) FROM items WHERE name LIKE $1", tag+"-batch%")
	br := q.SendBatch(ctx, b)
	for i := range 2 {
		if _, err := br.Exec(); err != nil {
			t.Fatalf("%s batch %d: %v", tag, i, err)
		}
	}
	var inBatch int
	if err := br.QueryRow().Scan(&inBatch); err != nil {
		t.Fatalf("%s batch read: %v", tag, err)
	}
	if err := br.Close(); err != nil {
		t.Fatalf("%s batch close: %v", tag, err)
	}
	if inBatch != 2 {
		t.Errorf("%s: the batch saw %d of its own rows, want 2", tag, inBatch)
	}
	// An explicit exec mode per call goes through pgx itself.
	var viaPgx int
	if err := q.QueryRow(ctx, "SELECT count(*) FROM items WHERE name LIKE $1", pgx.QueryExecModeExec, tag+"-%").Scan(&viaPgx); err != nil {
		t.Fatalf("%s QueryRow with an explicit exec mode: %v", tag, err)
	}
	if viaPgx != 4 {
		t.Errorf("%s: a read with an explicit exec mode saw %d of its 4 rows", tag, viaPgx)
	}
	var id string
	if err := q.QueryRow(ctx, "SELECT DISTINCT tenant_id FROM items WHERE name LIKE $1", tag+"-%").Scan(&id); err != nil {
		t.Fatalf("%s tenant_id: %v", tag, err)
	}
	if want, _ := tenant.FromContext(ctx); id != want.ID {
		t.Errorf("%s: rows carry tenant_id %q, want %q", tag, id, want.ID)
	}
}

func want(tag string) []string {
	return []string{tag + "-batch1", tag + "-batch2", tag + "-exec", tag + "-row"}
}

// TestEveryPathOnCitus runs the program through the Pool, a Tx and an
// Acquired Conn, in each exec mode Citus mode allows, for two tenants, and
// compares what each tenant reads with exactly what it wrote.
func TestEveryPathOnCitus(t *testing.T) {
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			c := newCluster(t)
			p := c.pool(t, mode)
			for _, tn := range []tenant.Tenant{c.a, c.b} {
				ctx := tenant.NewContext(context.Background(), tn)
				program(t, ctx, p, tn.Slug+"-pool")

				tx, err := p.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				program(t, ctx, tx, tn.Slug+"-tx")
				if err := tx.Commit(ctx); err != nil {
					t.Fatalf("commit: %v", err)
				}

				tx, err = p.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				program(t, ctx, tx, tn.Slug+"-rolledback")
				if err := tx.Rollback(ctx); err != nil {
					t.Fatalf("rollback: %v", err)
				}

				conn, err := p.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				program(t, ctx, conn, tn.Slug+"-conn")
				ctxTx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				program(t, ctx, ctxTx, tn.Slug+"-conntx")
				if err := ctxTx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				conn.Release()

				// An explicit per-call exec mode goes through pgx, in a
				// transaction that carries the tenant.
				if _, err := p.Exec(ctx, "INSERT INTO items (name) VALUES ($1)", pgx.QueryExecModeSimpleProtocol, tn.Slug+"-simplearg"); err != nil {
					t.Fatalf("per-call simple protocol: %v", err)
				}
				// CopyFrom stages rows and moves them with one INSERT.
				if _, err := p.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"name"}, pgx.CopyFromRows([][]any{{tn.Slug + "-copy"}})); err != nil {
					t.Fatalf("CopyFrom: %v", err)
				}
			}
			for _, tn := range []tenant.Tenant{c.a, c.b} {
				ctx := tenant.NewContext(context.Background(), tn)
				var exp []string
				for _, tag := range []string{"-conn", "-conntx", "-pool", "-tx"} {
					exp = append(exp, want(tn.Slug+tag)...)
				}
				exp = append(exp, tn.Slug+"-copy", tn.Slug+"-simplearg")
				sortStrings(exp)
				if diff := cmp.Diff(exp, names(t, p, ctx)); diff != "" {
					t.Errorf("tenant %s reads (-want +got):\n%s", tn.Slug, diff)
				}
			}
			// Through database/sql too.
			db := pgtenant.OpenDB(p)
			defer db.Close()
			var n int
			if err := db.QueryRowContext(tenant.NewContext(context.Background(), c.a), "SELECT count(*) FROM items").Scan(&n); err != nil || n != 18 {
				t.Errorf("OpenDB count for tenant a = %d, %v; want 18", n, err)
			}
		})
	}
}

func sortStrings(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

// TestFailedBlockIsRolledBack: on a pool of one connection, statements that
// fail inside Citus mode's block (a unique violation, a cancelled context,
// an error in a batch) leave the connection clean for the next one.
func TestFailedBlockIsRolledBack(t *testing.T) {
	c := newCluster(t)
	cfg := c.pg.AppConfig(t)
	cfg.MaxConns = 1
	p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ca := tenant.NewContext(context.Background(), c.a)
	if _, err := p.Exec(ca, "INSERT INTO items (id, name) VALUES (1, 'one')"); err != nil {
		t.Fatal(err)
	}
	var pgErr *pgconn.PgError
	if _, err := p.Exec(ca, "INSERT INTO items (id, name) VALUES (1, 'again')"); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("duplicate insert: %v, want 23505", err)
	}
	var n string
	if err := p.QueryRow(ca, "SELECT name FROM items WHERE id = $1", 2).Scan(&n); !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("QueryRow of a missing row: %v, want pgx.ErrNoRows", err)
	}
	rows, _ := p.Query(ca, "SELECT 1 / (id - 1) FROM items")
	rows.Close()
	if err := rows.Err(); !errors.As(err, &pgErr) || pgErr.Code != "22012" {
		t.Fatalf("division by zero: %v", err)
	}
	b := &pgx.Batch{}
	b.Queue("INSERT INTO items (id, name) VALUES (3, 'three')")
	b.Queue("INSERT INTO items (id, name) VALUES (1, 'dup')")
	if err := p.SendBatch(ca, b).Close(); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("batch: %v, want 23505", err)
	}
	cctx, cancel := context.WithCancel(ca)
	cancel()
	if _, err := p.Exec(cctx, "INSERT INTO items (id, name) VALUES (4, 'four')"); err == nil {
		t.Fatal("cancelled Exec succeeded")
	}
	cb := tenant.NewContext(context.Background(), c.b)
	if _, err := p.Exec(cb, "INSERT INTO items (id, name) VALUES (1, 'b-one')"); err != nil {
		t.Fatalf("the next tenant's statement on the one connection: %v", err)
	}
	if diff := cmp.Diff([]string{"one"}, names(t, p, ca)); diff != "" {
		t.Errorf("tenant a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b-one"}, names(t, p, cb)); diff != "" {
		t.Errorf("tenant b (-want +got):\n%s", diff)
	}
}

// TestCrossSchemaOnCitus: tenant a's statements that name tenant b's
// schema find none of b's rows and cannot write there — RLS on the worker
// that holds b's schema refuses it.
func TestCrossSchemaOnCitus(t *testing.T) {
	c := newCluster(t)
	p := c.pool(t, pgx.QueryExecModeCacheStatement)
	ca, cb := tenant.NewContext(context.Background(), c.a), tenant.NewContext(context.Background(), c.b)
	if _, err := p.Exec(cb, "INSERT INTO items (name) VALUES ('b-secret')"); err != nil {
		t.Fatal(err)
	}
	other := pgx.Identifier{pgtenant.SchemaName(c.b), "items"}.Sanitize()
	var n int
	if err := p.QueryRow(ca, "SELECT count(*) FROM "+other).Scan(&n); err != nil || n != 0 {
		t.Errorf("tenant a counting b's rows: %d, %v; want 0", n, err)
	}
	_, err := p.Exec(ca, "INSERT INTO "+other+" (tenant_id, name) VALUES ($1, 'planted')", c.b.ID)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("tenant a writing into b's schema: %v; want 42501 (row level security)", err)
	}
	if diff := cmp.Diff([]string{"b-secret"}, names(t, p, cb)); diff != "" {
		t.Errorf("tenant b (-want +got):\n%s", diff)
	}
}

// TestSimpleProtocolRefusedOnCitus: a pool on the simple protocol cannot
// carry the tenant to the workers (see pgtenant.CitusMode), and New says so.
func TestSimpleProtocolRefusedOnCitus(t *testing.T) {
	c := newCluster(t)
	cfg := c.pg.AppConfig(t)
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err == nil {
		p.Close()
		t.Fatal("New accepted the simple protocol in Citus mode")
	}
	if !errors.Is(err, pgtenant.ErrInvalidConfig) {
		t.Errorf("New: %v; want ErrInvalidConfig", err)
	}
}

// TestConnRefusesTransactionControlOnCitus: a Conn runs each statement in a
// block of its own on Citus, so BEGIN in SQL is refused.
func TestConnRefusesTransactionControlOnCitus(t *testing.T) {
	c := newCluster(t)
	p := c.pool(t, pgx.QueryExecModeCacheStatement)
	ca := tenant.NewContext(context.Background(), c.a)
	conn, err := p.Acquire(ca)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ca, "BEGIN"); err == nil {
		t.Fatal("Conn.Exec(BEGIN) accepted on Citus")
	}
	if _, err := conn.Exec(ca, "INSERT INTO items (name) VALUES ('after')"); err != nil {
		t.Fatalf("the Conn after the refusal: %v", err)
	}
}

// TestSerialRefusedOnCitus: provisioning refuses serial columns with an
// error that names them.
func TestSerialRefusedOnCitus(t *testing.T) {
	pg := citusPG(t)
	ctx := context.Background()
	reg, err := provision.New(ctx, provision.Config{Owner: pg.OwnerPool(t), AppRole: pg.AppRole,
		Builder: provision.DDL(`CREATE TABLE things (id serial PRIMARY KEY, tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'))`)})
	if err != nil {
		t.Fatal(err)
	}
	tn := newTenant(t)
	_, err = reg.Create(ctx, provision.Spec{Slug: tn.Slug, ID: tn.ID})
	if !errors.Is(err, provision.ErrSequenceDefault) || !strings.Contains(err.Error(), "things.id") {
		t.Fatalf("Create with a serial column: %v; want ErrSequenceDefault naming things.id", err)
	}
	if _, err := reg.Get(ctx, tn.Slug); !errors.Is(err, provision.ErrTenantNotFound) {
		t.Errorf("after the refusal, Get: %v; want ErrTenantNotFound (nothing left)", err)
	}
}

// TestMultiStatementDDLOnCitus: a DDL string of several statements goes to
// the server one statement per query string (Citus forwards each DDL
// statement's text to the workers, and a string of several fails there).
func TestMultiStatementDDLOnCitus(t *testing.T) {
	pg := citusPG(t)
	ctx := context.Background()
	reg, err := provision.New(ctx, provision.Config{Owner: pg.OwnerPool(t), AppRole: pg.AppRole, Logger: slog.New(slog.DiscardHandler),
		Builder: provision.DDL(itemsDDL + `; CREATE INDEX items_name ON items (name);
			CREATE TABLE notes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'), body text)`)})
	if err != nil {
		t.Fatal(err)
	}
	tn := newTenant(t)
	if _, err := reg.Create(ctx, provision.Spec{Slug: tn.Slug, ID: tn.ID}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	var tables int
	if err := pg.AdminPool(t).QueryRow(ctx, "SELECT count(*) FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
		pgtenant.SchemaName(tn)).Scan(&tables); err != nil || tables != 2 {
		t.Errorf("distributed tables in the tenant's schema: %d, %v; want 2", tables, err)
	}
}

// TestMigrateOnCitus: a migration that adds a column and an index runs on
// every distributed tenant schema, and the app reads the new column.
func TestMigrateOnCitus(t *testing.T) {
	c := newCluster(t)
	chain := fstest.MapFS{
		"00001_note.sql": {Data: []byte("-- +goose Up\nALTER TABLE items ADD COLUMN note text NOT NULL DEFAULT 'none';\nCREATE INDEX items_note ON items (note);\n-- +goose Down\nDROP INDEX items_note;\nALTER TABLE items DROP COLUMN note;\n")},
		"00002_tags.sql": {Data: []byte("-- +goose Up\nCREATE TABLE tags (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'), tag text NOT NULL);\n-- +goose Down\nDROP TABLE tags;\n")},
		// Two SQL statements in one goose statement, and a seed row that
		// must pass RLS on the worker.
		"00003_block.sql": {Data: []byte("-- +goose Up\n-- +goose StatementBegin\nALTER TABLE tags ADD COLUMN weight int NOT NULL DEFAULT 1; CREATE INDEX tags_weight ON tags (weight);\n-- +goose StatementEnd\nINSERT INTO tags (tag) VALUES ('seed');\n")},
	}
	cc, err := pgx.ParseConfig(c.pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrate.New(migrate.Config{ConnConfig: cc, Tenant: chain, AppRole: c.pg.AppRole})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	report, err := m.UpAll(ctx, c.reg)
	if err != nil || report.Err() != nil {
		t.Fatalf("UpAll: %v, %v", err, report.Err())
	}
	for _, res := range report.Results {
		if res.ViaGoose {
			t.Errorf("tenant %s went through goose; want the fleet runner (its block carries the tenant to the workers)", res.Tenant.Slug)
		}
	}
	p := c.pool(t, pgx.QueryExecModeCacheStatement)
	for _, tn := range []tenant.Tenant{c.a, c.b} {
		tctx := tenant.NewContext(ctx, tn)
		if _, err := p.Exec(tctx, "INSERT INTO items (name, note) VALUES ($1, 'noted')", tn.Slug); err != nil {
			t.Fatalf("insert with the new column: %v", err)
		}
		if _, err := p.Exec(tctx, "INSERT INTO tags (tag) VALUES ($1)", tn.Slug); err != nil {
			t.Fatalf("insert into the new table: %v", err)
		}
		var note string
		if err := p.QueryRow(tctx, "SELECT note FROM items").Scan(&note); err != nil || note != "noted" {
			t.Fatalf("read back: %q, %v", note, err)
		}
		if got := names(t, queryFunc(func(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
			return p.Query(ctx, "SELECT tag || ':' || weight || ':' || (tenant_id = $1) FROM tags ORDER BY tag", tn.ID)
		}), tctx); !cmp.Equal(got, []string{"seed:1:true", tn.Slug + ":1:true"}) && !cmp.Equal(got, []string{tn.Slug + ":1:true", "seed:1:true"}) {
			t.Errorf("tenant %s tags: %q; want its own and the seed row", tn.Slug, got)
		}
		var idx, distributed bool
		admin := c.pg.AdminPool(t)
		if err := admin.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass($2))`,
			pgtenant.SchemaName(tn)+".items_note", pgtenant.SchemaName(tn)+".tags").Scan(&idx, &distributed); err != nil {
			t.Fatal(err)
		}
		if !idx || !distributed {
			t.Errorf("tenant %s: index %v, new table distributed %v; want both", tn.Slug, idx, distributed)
		}
	}
}

// TestCopyFromAndBeginFuncOnCitus: CopyFrom of more rows than one INSERT
// carries (several types), and pgx.BeginFunc, each for two tenants.
func TestCopyFromAndBeginFuncOnCitus(t *testing.T) {
	c := newCluster(t)
	p := c.pool(t, pgx.QueryExecModeCacheStatement)
	const n = 2500
	for i, tn := range []tenant.Tenant{c.a, c.b} {
		ctx := tenant.NewContext(context.Background(), tn)
		rows := make([][]any, n+i)
		for r := range rows {
			rows[r] = []any{int64(r + 1), fmt.Sprintf("%s-%04d", tn.Slug, r)}
		}
		got, err := p.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "name"}, pgx.CopyFromRows(rows))
		if err != nil || got != int64(n+i) {
			t.Fatalf("CopyFrom for %s: %d, %v; want %d", tn.Slug, got, err, n+i)
		}
		if err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO items (id, name) VALUES (0, $1)", tn.Slug+"-beginfunc")
			return err
		}); err != nil {
			t.Fatalf("BeginFunc: %v", err)
		}
	}
	for i, tn := range []tenant.Tenant{c.a, c.b} {
		ctx := tenant.NewContext(context.Background(), tn)
		var count, foreign int
		var first string
		if err := p.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE tenant_id <> $1), min(name) FROM items", tn.ID).Scan(&count, &foreign, &first); err != nil {
			t.Fatal(err)
		}
		if count != n+i+1 || foreign != 0 || first != tn.Slug+"-0000" {
			t.Errorf("tenant %s: %d rows (%d foreign), first %q; want %d, 0, %q", tn.Slug, count, foreign, first, n+i+1, tn.Slug+"-0000")
		}
	}
}

// queryFunc adapts a function to names' parameter.
type queryFunc func(ctx context.Context, sql string, args ...any) (pgx.Rows, error)

func (f queryFunc) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return f(ctx, sql, args...)
}

// TestTransactionsOnCitus: savepoints, an error mid-transaction (the
// transaction aborts as pgx's does, nothing kept, the one connection
// usable), OpenDB's transactions, and two tenants' transactions open at once.
func TestTransactionsOnCitus(t *testing.T) {
	c := newCluster(t)
	cfg := c.pg.AppConfig(t)
	cfg.MaxConns = 2
	p, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ca, cb := tenant.NewContext(context.Background(), c.a), tenant.NewContext(context.Background(), c.b)

	// Savepoints: the rolled-back part goes, the tenant stays.
	tx, err := p.Begin(ca)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ca, "INSERT INTO items (name) VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	sp, err := tx.Begin(ca)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Exec(ca, "INSERT INTO items (name) VALUES ('undone')"); err != nil {
		t.Fatal(err)
	}
	if err := sp.Rollback(ca); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ca, "INSERT INTO items (name) VALUES ('after-savepoint')"); err != nil {
		t.Fatalf("after the savepoint: %v", err)
	}
	// Tenant b's transaction, open at the same time on the other connection.
	txb, err := p.Begin(cb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txb.Exec(cb, "INSERT INTO items (name) VALUES ('b-concurrent')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ca); err != nil {
		t.Fatal(err)
	}
	if err := txb.Commit(cb); err != nil {
		t.Fatal(err)
	}

	// An error mid-transaction aborts it; Commit reports the rollback.
	tx, err = p.Begin(ca)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ca, "INSERT INTO items (name) VALUES ('lost')"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ca, "SELECT 1 / 0"); err == nil {
		t.Fatal("division by zero succeeded")
	}
	var pgErr *pgconn.PgError
	if _, err := tx.Exec(ca, "SELECT 1"); !errors.As(err, &pgErr) || pgErr.Code != "25P02" {
		t.Errorf("a statement after the error: %v; want 25P02", err)
	}
	if err := tx.Commit(ca); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Errorf("Commit after the error: %v; want pgx.ErrTxCommitRollback", err)
	}

	// database/sql.
	db := pgtenant.OpenDB(p)
	defer db.Close()
	stx, err := db.BeginTx(cb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stx.ExecContext(cb, "INSERT INTO items (name) VALUES ('b-sql')"); err != nil {
		t.Fatal(err)
	}
	if err := stx.Commit(); err != nil {
		t.Fatal(err)
	}

	if diff := cmp.Diff([]string{"after-savepoint", "kept"}, names(t, p, ca)); diff != "" {
		t.Errorf("tenant a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b-concurrent", "b-sql"}, names(t, p, cb)); diff != "" {
		t.Errorf("tenant b (-want +got):\n%s", diff)
	}
}

// TestSharedTablesOnCitus: the pool model on Citus — one table distributed
// by tenant_id (row-based sharding), confined by provision in
// SharedTables mode, read and written through pgtenant in SharedTables
// mode: each tenant sees exactly its rows, on whichever worker they live.
func TestSharedTablesOnCitus(t *testing.T) {
	pg := citusPG(t)
	ctx := context.Background()
	owner := pg.OwnerPool(t)
	// A schema of the owner's (PUBLIC cannot create in public), not
	// distributed itself: the table is distributed by tenant_id.
	schema := "shared_" + newTenant(t).Slug
	table := pgx.Identifier{schema, "notes"}.Sanitize()
	if _, err := owner.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, "GRANT USAGE ON SCHEMA "+pgx.Identifier{schema}.Sanitize()+" TO "+pgx.Identifier{pg.AppRole}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, "CREATE TABLE "+table+" (id bigint GENERATED BY DEFAULT AS IDENTITY, tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'), body text, PRIMARY KEY (tenant_id, id))"); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, "SELECT create_distributed_table($1, 'tenant_id')", schema+".notes"); err != nil {
		t.Fatal(err)
	}
	reg, err := provision.New(ctx, provision.Config{Owner: owner, AppRole: pg.AppRole, Mode: pgtenant.SharedTables,
		SharedTables: []string{schema + ".notes"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var tenants []tenant.Tenant
	for range 4 { // several, so that their rows spread over the workers
		tn := newTenant(t)
		if _, err := reg.Create(ctx, provision.Spec{Slug: tn.Slug, ID: tn.ID}); err != nil {
			t.Fatalf("Create: %v", err)
		}
		tenants = append(tenants, tn)
	}
	cfg := pg.AppConfig(t)
	p, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg, Mode: pgtenant.SharedTables})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, tn := range tenants {
		tctx := tenant.NewContext(ctx, tn)
		for _, body := range []string{"one", "two"} {
			if _, err := p.Exec(tctx, "INSERT INTO "+table+" (body) VALUES ($1)", tn.Slug+"-"+body); err != nil {
				t.Fatalf("insert: %v", err)
			}
		}
	}
	for _, tn := range tenants {
		tctx := tenant.NewContext(ctx, tn)
		rows, err := p.Query(tctx, "SELECT body FROM "+table+" ORDER BY body")
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{tn.Slug + "-one", tn.Slug + "-two"}, got); diff != "" {
			t.Errorf("tenant %s (-want +got):\n%s", tn.Slug, diff)
		}
		// A row for another tenant is refused on the worker.
		other := tenants[(slices.Index(tenants, tn)+1)%len(tenants)]
		if _, err := p.Exec(tctx, "INSERT INTO "+table+" (tenant_id, body) VALUES ($1, 'planted')", other.ID); err == nil {
			t.Errorf("tenant %s planted a row for %s", tn.Slug, other.Slug)
		}
	}
}

// TestSerialMigrationOnCitus: a migration that adds a serial column, or a
// table with one, fails for every tenant with ErrSequenceDefault — Citus's
// own refusal of ADD COLUMN serial included — and changes nothing.
func TestSerialMigrationOnCitus(t *testing.T) {
	c := newCluster(t)
	for _, ddl := range []string{
		"ALTER TABLE items ADD COLUMN n serial;",
		"CREATE TABLE things (id serial PRIMARY KEY, tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id'));",
	} {
		cc, err := pgx.ParseConfig(c.pg.OwnerURL)
		if err != nil {
			t.Fatal(err)
		}
		m, err := migrate.New(migrate.Config{ConnConfig: cc, AppRole: c.pg.AppRole, Logger: slog.New(slog.DiscardHandler),
			Tenant: fstest.MapFS{"00001_serial.sql": {Data: []byte("-- +goose Up\n" + ddl + "\n")}}})
		if err != nil {
			t.Fatal(err)
		}
		report, err := m.UpAll(context.Background(), c.reg)
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, res := range report.Results {
			if res.Tenant != c.a && res.Tenant != c.b {
				continue // another test's tenant in the shared registry
			}
			seen++
			if !errors.Is(res.Err, migrate.ErrSequenceDefault) || res.To != 0 {
				t.Errorf("%s: tenant %s: %v (at version %d); want ErrSequenceDefault at version 0", ddl, res.Tenant.Slug, res.Err, res.To)
			}
		}
		if seen != 2 {
			t.Errorf("%s: %d of the two tenants reported", ddl, seen)
		}
	}
}
