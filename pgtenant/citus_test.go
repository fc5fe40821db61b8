package pgtenant_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
)

// Citus mode's code paths on plain PostgreSQL (CitusOn): the blocks and the
// SET LOCALs change nothing a program can see (see also the citus variants
// of TestDifferentialAgainstPgx), and what they promise is checked here. The
// tests that need a real cluster are in internal/citustest.

// TestCitusModeSetsTheTenantLocally: in Citus mode every path runs its
// statement with the tenant set by SET LOCAL after citus.propagate_set_commands
// = 'local' (both visible to the statement), and nothing of it stays on the
// connection; with CitusAuto on a database without the extension, none of
// it is sent.
func TestCitusModeSetsTheTenantLocally(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "cm", 1, 1)[0]
	ctx := ctxFor(tn)
	const probe = "SELECT coalesce(current_setting('citus.propagate_set_commands', true), ''), current_setting('app.tenant_id', true), pg_catalog.pg_backend_pid()"
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			on := newPool(t, pg, func(c *pgtenant.Config) {
				c.Citus = pgtenant.CitusOn
				c.PoolConfig.MaxConns = 1
				c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode
			})
			var prop, id string
			var pid int
			check := func(path string, scan func(dest ...any) error) {
				t.Helper()
				if err := scan(&prop, &id, &pid); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if prop != "local" || id != tn.ID {
					t.Errorf("%s: propagate_set_commands %q, tenant %q; want \"local\", %q", path, prop, id, tn.ID)
				}
			}
			check("Pool.QueryRow", on.QueryRow(ctx, probe).Scan)
			first := pid
			tx, err := on.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			check("Tx.QueryRow", tx.QueryRow(ctx, probe).Scan)
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			b := &pgx.Batch{}
			b.Queue(probe)
			br := on.SendBatch(ctx, b)
			check("Pool.SendBatch", br.QueryRow().Scan)
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}
			conn, err := on.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			check("Conn.QueryRow", conn.QueryRow(ctx, probe).Scan)
			ctx2, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			check("Conn.Begin", ctx2.QueryRow(ctx, probe).Scan)
			if err := ctx2.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			// Nothing stays for the session: read raw on the same connection.
			var left string
			if err := conn.Conn().QueryRow(ctx, "SELECT coalesce(current_setting('citus.propagate_set_commands', true), '')").Scan(&left); err != nil || left != "" {
				t.Errorf("after the statements the session has propagate_set_commands %q (%v); want unset", left, err)
			}
			conn.Release()
			check("Pool.Exec with an explicit exec mode", on.QueryRow(ctx, probe, pgx.QueryExecModeDescribeExec).Scan)
			if pid != first {
				t.Errorf("the pool's one connection changed (%d, then %d): a block was not ended", first, pid)
			}

			off := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode })
			if err := off.QueryRow(ctx, probe).Scan(&prop, &id, &pid); err != nil || prop != "" || id != tn.ID {
				t.Errorf("CitusAuto without the extension: %q, %q, %v; want no Citus setting", prop, id, err)
			}
		})
	}
}

// TestCitusModeFailedBlocks: on a pool of one connection in Citus mode,
// statements that fail inside their block (on the statement, in a batch, in
// a query's rows, on a Conn) leave the block rolled back — the same
// connection serves the next statement, nothing of the failed block is
// kept — and a stale prepared statement is still retried.
func TestCitusModeFailedBlocks(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "cf", 1, 0)[0]
	ctx := ctxFor(tn)
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.Citus = pgtenant.CitusOn
		c.PoolConfig.MaxConns = 1
	})
	pid := func() int {
		t.Helper()
		var n int
		if err := p.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid()").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	first := pid()
	var pgErr *pgconn.PgError
	if _, err := p.Exec(ctx, "INSERT INTO items (id, name) VALUES (1, 'one')"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, "INSERT INTO items (id, name) VALUES (1, 'dup')"); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("duplicate: %v", err)
	}
	rows, _ := p.Query(ctx, "SELECT 1 / (id - 1) FROM items")
	rows.Close()
	if !errors.As(rows.Err(), &pgErr) || pgErr.Code != "22012" {
		t.Fatalf("rows: %v", rows.Err())
	}
	b := &pgx.Batch{}
	b.Queue("INSERT INTO items (id, name) VALUES (2, 'two')")
	b.Queue("INSERT INTO items (id, name) VALUES (1, 'dup')")
	if err := p.SendBatch(ctx, b).Close(); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("batch: %v", err)
	}
	conn, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release() // a failure below must not leave Close waiting for it
	if _, err := conn.Exec(ctx, "INSERT INTO items (id, name) VALUES (1, 'dup')"); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("Conn: %v", err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO items (id, name) VALUES (3, 'three')"); err != nil {
		t.Fatalf("Conn after a failed block: %v", err)
	}
	if _, err := conn.Exec(ctx, "BEGIN"); err == nil {
		t.Error("Conn.Exec(BEGIN) in Citus mode: accepted")
	}
	conn.Release()
	// A stale statement: the table changes type under a prepared read.
	if got := names(t, p, ctx, "SELECT name FROM items ORDER BY id"); !cmp.Equal(got, []string{"one", "three"}) {
		t.Errorf("rows kept: %q; want [one three]", got)
	}
	if _, err := pg.OwnerPool(t).Exec(context.Background(), "ALTER TABLE "+pgx.Identifier{pgtenant.SchemaName(tn), "items"}.Sanitize()+" ALTER COLUMN name TYPE varchar(20)"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, p, ctx, "SELECT name FROM items ORDER BY id"); !cmp.Equal(got, []string{"one", "three"}) {
		t.Errorf("after ALTER: %q", got)
	}
	if now := pid(); now != first {
		t.Errorf("the one connection was replaced (%d, then %d): a failed block was destroyed, not rolled back", first, now)
	}
}

// TestCitusModeRefusesTheSimpleProtocol: New says why.
func TestCitusModeRefusesTheSimpleProtocol(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	cfg := pgtenant.Config{PoolConfig: pg.AppConfig(t), Citus: pgtenant.CitusOn}
	cfg.PoolConfig.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	p, err := pgtenant.New(context.Background(), cfg)
	if err == nil {
		p.Close()
		t.Fatal("New accepted the simple protocol in Citus mode")
	}
	if !errors.Is(err, pgtenant.ErrInvalidConfig) {
		t.Errorf("New: %v; want ErrInvalidConfig", err)
	}
	cfg.Citus = pgtenant.CitusMode(7)
	if _, err := pgtenant.New(context.Background(), cfg); !errors.Is(err, pgtenant.ErrInvalidConfig) {
		t.Errorf("New with Citus %v: %v; want ErrInvalidConfig", cfg.Citus, err)
	}
}

// TestCitusModeConnWithOpenTx: in Citus mode a Conn statement sent while
// the Conn's own transaction is open is refused (it would run in a block of
// its own inside that transaction), and the transaction is unharmed.
func TestCitusModeConnWithOpenTx(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "co", 1, 0)[0]
	ctx := ctxFor(tn)
	p := newPool(t, pg, func(c *pgtenant.Config) { c.Citus = pgtenant.CitusOn })
	conn, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO items (name) VALUES ('in-tx')"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO items (name) VALUES ('beside')"); err == nil || !strings.Contains(err.Error(), "Conn.Begin") {
		t.Errorf("Conn.Exec with the Conn's Tx open: %v; want a refusal that points to the Tx", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit after the refusal: %v", err)
	}
	if got := names(t, conn, ctx, "SELECT name FROM items ORDER BY name"); !cmp.Equal(got, []string{"in-tx"}) {
		t.Errorf("rows: %q; want [in-tx]", got)
	}
}

// TestCitusModeCopyFromMatchesCopy: CopyFrom in Citus mode (multi-row
// INSERTs) stores exactly what the COPY path stores, for columns of many
// types and more rows than one INSERT carries, and RLS checks every row.
func TestCitusModeCopyFromMatchesCopy(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	owner := pg.OwnerPool(t)
	tenants := createTenants(t, pg, "cc", 2, 0)
	cols := []string{"name", "n", "f", "ok", "at", "day", "blob", "doc", "tags", "amount", "uid"}
	for _, tn := range tenants {
		if _, err := owner.Exec(context.Background(), "ALTER TABLE "+pgx.Identifier{pgtenant.SchemaName(tn), "items"}.Sanitize()+
			` ADD COLUMN n bigint, ADD COLUMN f float8, ADD COLUMN ok bool, ADD COLUMN at timestamptz, ADD COLUMN day date,
			  ADD COLUMN blob bytea, ADD COLUMN doc jsonb, ADD COLUMN tags text[], ADD COLUMN amount numeric, ADD COLUMN uid uuid`); err != nil {
			t.Fatal(err)
		}
	}
	rows := make([][]any, 2345)
	for i := range rows {
		var blob []byte
		if i%7 != 0 {
			blob = []byte{byte(i), 0, 0xff}
		}
		rows[i] = []any{"r" + strings.Repeat("x", i%5), int64(i) << 33, float64(i) / 3, i%2 == 0,
			time.Date(2026, 11, 29, 12, 0, i%60, 0, time.UTC), time.Date(2026, 1, 1+i%28, 0, 0, 0, 0, time.UTC),
			blob, map[string]any{"i": i, "s": "it's"}, []string{"a", "b'c"}, "12345678901234567890.0123",
			"00000000-0000-0000-0000-" + fmt.Sprintf("%012d", i)}
	}
	read := func(p *pgtenant.Pool, ctx context.Context) []string {
		rows, err := p.Query(ctx, "SELECT concat_ws('|', "+strings.Join(cols, ", ")+", tenant_id) FROM items ORDER BY n")
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var got [2][]string
	for i, mode := range []pgtenant.CitusMode{pgtenant.CitusOff, pgtenant.CitusOn} {
		p := newPool(t, pg, func(c *pgtenant.Config) { c.Citus = mode })
		ctx := ctxFor(tenants[i])
		n, err := p.CopyFrom(ctx, pgx.Identifier{"items"}, cols, pgx.CopyFromRows(rows))
		if err != nil || n != int64(len(rows)) {
			t.Fatalf("%v: CopyFrom: %d, %v", mode, n, err)
		}
		got[i] = read(p, ctx)
		for j := range got[i] {
			got[i][j] = strings.TrimSuffix(got[i][j], "|"+tenants[i].ID)
		}
		// A row for another tenant is refused by the policy, and nothing of
		// the copy stays.
		if _, err := p.CopyFrom(ctx, pgx.Identifier{"items"}, append([]string{"tenant_id"}, cols[:10]...), pgx.CopyFromRows([][]any{{tenants[1-i].ID, "x", int64(-1), nil, nil, nil, nil, nil, nil, nil, nil}})); err == nil {
			t.Errorf("%v: CopyFrom of a row for another tenant succeeded", mode)
		}
	}
	if diff := cmp.Diff(got[0], got[1]); diff != "" {
		t.Errorf("rows stored (-COPY +INSERTs):\n%s", diff)
	}
	if len(got[1]) != len(rows) {
		t.Errorf("%d rows stored, want %d", len(got[1]), len(rows))
	}
}
