package pgtenant_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
)

// TestStatementWhileRowsOpen: a statement sent on a connection whose rows
// are still open is refused (pgx: conn busy), and the open rows read on,
// whole and right: the statement must not touch the buffers the open rows'
// reader still uses. Then the connection carries statements again, of the
// other tenant too, with MaxConns 1.
func TestStatementWhileRowsOpen(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "busy", 2, 300)
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
	ctx := ctxFor(tenants[0])
	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// Prepared on the connection before, so the probe below goes as far as
	// writing its batch.
	var first string
	if err := tx.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 1).Scan(&first); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, "SELECT name FROM items ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		got = append(got, name)
		if len(got) == 1 {
			// New statements on the busy connection, prepared and not.
			for _, sql := range []string{"SELECT count(*) FROM items", "SELECT name FROM items WHERE id = $1"} {
				var x any
				if err := tx.QueryRow(ctx, sql, 1).Scan(&x); err == nil {
					t.Errorf("%s ran while rows were open", sql)
				}
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 300 || got[0] != tenants[0].Slug+"-1" || got[299] != tenants[0].Slug+"-300" {
		t.Fatalf("read %d rows, %q … %q", len(got), got[0], got[len(got)-1])
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tn := range tenants {
		for id := 1; id <= 3; id++ {
			var name string
			if err := p.QueryRow(ctxFor(tn), "SELECT name FROM items WHERE id = $1", id).Scan(&name); err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%s-%d", tn.Slug, id); name != want {
				t.Errorf("%s: %q, want %q", tn.Slug, name, want)
			}
		}
	}
}

// TestLargeArgumentThenSmall: a statement whose arguments outgrow the
// connection's kept buffer, then small ones, on one connection, both exec
// modes that use the reused batch: every result is right.
func TestLargeArgumentThenSmall(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "bigarg", 1, 2)[0]
	for _, exec := range []bool{false, true} {
		p := newPool(t, pg, func(c *pgtenant.Config) {
			c.PoolConfig.MaxConns = 1
			if exec {
				c.PoolConfig.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
			}
		})
		ctx := ctxFor(tn)
		for _, size := range []int{10, 300 << 10, 5, 70 << 10, 1} {
			var n int
			if err := p.QueryRow(ctx, "SELECT length($1::text) + count(*)::int - count(*)::int FROM items", strings.Repeat("x", size)).Scan(&n); err != nil || n != size {
				t.Fatalf("exec=%v size %d: %d, %v", exec, size, n, err)
			}
		}
	}
}
