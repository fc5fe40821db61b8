package citustest_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// placement returns the port of the worker that holds schema's tables.
func placement(t *testing.T, c *cluster, schema string) int {
	t.Helper()
	var port int
	err := c.pg.AdminPool(t).QueryRow(context.Background(), `SELECT DISTINCT s.nodeport FROM citus_shards s
		JOIN pg_class c ON c.oid = s.table_name JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1`, schema).Scan(&port)
	if err != nil {
		t.Fatalf("placement of %s: %v", schema, err)
	}
	return port
}

// TestMoveUnderLoad moves tenant a's schema to another worker with
// shard_transfer_mode 'block_writes' while both tenants write and read
// through pgtenant: no statement fails, and each tenant reads exactly the
// rows it wrote. (The logical-replication modes do not finish while the
// tenant is written, see TestLogicalMoveOfAnIdleTenant; block_writes holds
// writes to the moving schema until the move ends.)
func TestMoveUnderLoad(t *testing.T) {
	c := newCluster(t)
	p := c.pool(t, pgx.QueryExecModeCacheStatement)
	schema := pgtenant.SchemaName(c.a)
	from := placement(t, c, schema)
	var to int
	if err := c.pg.AdminPool(t).QueryRow(context.Background(),
		"SELECT nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' AND nodeport <> $1 ORDER BY nodeport LIMIT 1", from).Scan(&to); err != nil {
		t.Skipf("one worker only: nowhere to move to (%v)", err)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failed atomic.Int64
	written := map[string]*atomic.Int64{c.a.ID: {}, c.b.ID: {}}
	for _, tn := range []tenant.Tenant{c.a, c.b} {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tctx := tenant.NewContext(context.Background(), tn)
				for ctx.Err() == nil {
					if _, err := p.Exec(tctx, "INSERT INTO items (name) VALUES ($1)", tn.Slug); err != nil {
						failed.Add(1)
						t.Errorf("tenant %s insert during the move: %v", tn.Slug, err)
						return
					}
					written[tn.ID].Add(1)
					var n int
					if err := p.QueryRow(tctx, "SELECT count(*) FROM items WHERE name <> $1", tn.Slug).Scan(&n); err != nil || n != 0 {
						failed.Add(1)
						t.Errorf("tenant %s read during the move: %d foreign rows, %v", tn.Slug, n, err)
						return
					}
				}
			}()
		}
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if _, err := c.pg.AdminPool(t).Exec(context.Background(), "SELECT citus_schema_move($1::regnamespace, '127.0.0.1', $2, 'block_writes')", schema, to); err != nil {
		stop()
		wg.Wait()
		t.Fatalf("citus_schema_move: %v", err)
	}
	t.Logf("moved %s from :%d to :%d in %v under load", schema, from, to, time.Since(start))
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	if got := placement(t, c, schema); got != to {
		t.Errorf("after the move %s is on :%d, want :%d", schema, got, to)
	}
	if failed.Load() > 0 {
		t.Fatalf("%d statements failed during the move", failed.Load())
	}
	for _, tn := range []tenant.Tenant{c.a, c.b} {
		var n int64
		if err := p.QueryRow(tenant.NewContext(context.Background(), tn), "SELECT count(*) FROM items").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := written[tn.ID].Load(); n != want || want == 0 {
			t.Errorf("tenant %s has %d rows, wrote %d", tn.Slug, n, want)
		}
	}
}

// TestLogicalMoveOfAnIdleTenant moves tenant a's schema with each
// logical-replication mode ('force_logical', then 'auto' back) while
// nothing writes to it: each move ends (under a two-minute statement
// timeout), the schema is on the other worker, and both tenants read the
// rows they had. These modes hang only while the moving tenant is written
// (measured: BENCHMARKS.md, "Citus"); block_writes is the mode for a tenant
// in use (TestMoveUnderLoad).
func TestLogicalMoveOfAnIdleTenant(t *testing.T) {
	c := newCluster(t)
	p := c.pool(t, pgx.QueryExecModeCacheStatement)
	schema := pgtenant.SchemaName(c.a)
	want := map[string]int64{}
	for i, tn := range []tenant.Tenant{c.a, c.b} {
		ctx := tenant.NewContext(context.Background(), tn)
		for range 50 * (i + 1) {
			if _, err := p.Exec(ctx, "INSERT INTO items (name) VALUES ($1)", tn.Slug); err != nil {
				t.Fatal(err)
			}
		}
		want[tn.ID] = int64(50 * (i + 1))
	}
	admin := c.pg.AdminPool(t)
	for _, mode := range []string{"force_logical", "auto"} {
		from := placement(t, c, schema)
		var to int
		if err := admin.QueryRow(context.Background(),
			"SELECT nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' AND nodeport <> $1 ORDER BY nodeport LIMIT 1", from).Scan(&to); err != nil {
			t.Skipf("one worker only: nowhere to move to (%v)", err)
		}
		conn, err := admin.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = conn.Exec(context.Background(), "SET statement_timeout = '2min'")
		if err == nil {
			_, err = conn.Exec(context.Background(), "SELECT citus_schema_move($1::regnamespace, '127.0.0.1', $2, $3::citus.shard_transfer_mode)", schema, to, mode)
		}
		_, _ = conn.Exec(context.Background(), "RESET statement_timeout")
		conn.Release()
		if err != nil {
			t.Fatalf("citus_schema_move %s of an idle tenant: %v", mode, err)
		}
		t.Logf("%s moved idle %s from :%d to :%d in %v", mode, schema, from, to, time.Since(start))
		if got := placement(t, c, schema); got != to {
			t.Errorf("%s: after the move %s is on :%d, want :%d", mode, schema, got, to)
		}
	}
	for _, tn := range []tenant.Tenant{c.a, c.b} {
		var n int64
		if err := p.QueryRow(tenant.NewContext(context.Background(), tn), "SELECT count(*) FROM items WHERE name = $1", tn.Slug).Scan(&n); err != nil {
			t.Fatal(err)
		}
		var all int64
		if err := p.QueryRow(tenant.NewContext(context.Background(), tn), "SELECT count(*) FROM items").Scan(&all); err != nil {
			t.Fatal(err)
		}
		if n != want[tn.ID] || all != n {
			t.Errorf("tenant %s reads %d of its rows (%d in all) after the moves, want %d", tn.Slug, n, all, want[tn.ID])
		}
	}
}
