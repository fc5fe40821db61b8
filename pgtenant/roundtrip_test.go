package pgtenant_test

import (
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
)

// TestRoundTrips: what the documentation promises — a warm statement of the
// pool (Exec, Query, QueryRow, a batch, a call with its own exec mode) is
// one round trip with its scope; a transaction's first statement carries
// BEGIN and the scope (one), and COMMIT is one more — in the prepared and
// exec modes, and in Citus mode, whose blocks travel in the same write.
func TestRoundTrips(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "rt", 1, 3)[0]
	ctx := ctxFor(tn)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		for _, citus := range []pgtenant.CitusMode{pgtenant.CitusOff, pgtenant.CitusOn} {
			t.Run(mode.String()+"/"+citus.String(), func(t *testing.T) {
				var trips *atomic.Int64
				p := newPool(t, pg, func(c *pgtenant.Config) {
					c.Citus = citus
					c.PoolConfig.MaxConns = 1
					c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode
					trips = testenv.CountRoundTrips(&c.PoolConfig.ConnConfig.Config)
				})
				ops := []struct {
					name  string
					trips int64
					op    func() error
				}{
					{"Exec", 1, func() error { _, err := p.Exec(ctx, "UPDATE items SET name = name WHERE id = $1", 1); return err }},
					{"QueryRow", 1, func() error { var s string; return p.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 2).Scan(&s) }},
					{"Query", 1, func() error {
						rows, _ := p.Query(ctx, "SELECT name FROM items ORDER BY id")
						_, err := pgx.CollectRows(rows, pgx.RowTo[string])
						return err
					}},
					{"SendBatch", 1, func() error {
						b := &pgx.Batch{}
						b.Queue("SELECT 1")
						b.Queue("SELECT name FROM items WHERE id = $1", 3)
						return p.SendBatch(ctx, b).Close()
					}},
					{"QueryRow with its own exec mode", 1, func() error {
						var s string
						return p.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", pgx.QueryExecModeDescribeExec, 1).Scan(&s)
					}},
					{"Tx: first statement, COMMIT", 2, func() error {
						tx, err := p.Begin(ctx)
						if err != nil {
							return err
						}
						if _, err := tx.Exec(ctx, "UPDATE items SET name = name WHERE id = $1", 1); err != nil {
							return err
						}
						return tx.Commit(ctx)
					}},
				}
				for _, o := range ops {
					if err := o.op(); err != nil { // warm: statements prepared
						t.Fatalf("%s: %v", o.name, err)
					}
					before := trips.Load()
					if err := o.op(); err != nil {
						t.Fatalf("%s: %v", o.name, err)
					}
					if got := trips.Load() - before; got != o.trips {
						t.Errorf("%s: %d round trips, want %d", o.name, got, o.trips)
					}
				}
			})
		}
	}
}
