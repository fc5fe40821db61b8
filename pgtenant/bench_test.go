package pgtenant_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// benchTenants is the number of tenant schemas the benchmarks rotate over.
const benchTenants, benchRows = 100, 100

type benchEnv struct {
	tenants []tenant.Tenant
	ctxs    []context.Context
	rawSQL  []string // schema-qualified, for the plain pool
	rawURL  string   // a BYPASSRLS role: plain pgx, no tenancy machinery at all
}

var (
	benchOnce sync.Once
	benchData *benchEnv
)

func setupBench(b *testing.B) *benchEnv {
	b.Helper()
	pg := testenv.PostgreSQL(b)
	benchOnce.Do(func() {
		rawURL, err := pg.PackageRole("BYPASSRLS")
		if err != nil {
			b.Fatal(err)
		}
		env := &benchEnv{rawURL: rawURL}
		rawCfg, err := pgx.ParseConfig(env.rawURL)
		if err != nil {
			b.Fatal(err)
		}
		owner := pg.OwnerPool(b)
		env.tenants = createTenants(b, pg, "bench", benchTenants, benchRows)
		for _, tn := range env.tenants {
			s := pgx.Identifier{pgtenant.SchemaName(tn)}.Sanitize()
			for _, sql := range []string{
				"GRANT USAGE ON SCHEMA " + s + " TO " + pgx.Identifier{rawCfg.User}.Sanitize(),
				"GRANT SELECT ON ALL TABLES IN SCHEMA " + s + " TO " + pgx.Identifier{rawCfg.User}.Sanitize(),
				"ANALYZE " + s + ".items",
			} {
				if _, err := owner.Exec(context.Background(), sql); err != nil {
					b.Fatal(err)
				}
			}
			env.ctxs = append(env.ctxs, ctxFor(tn))
			env.rawSQL = append(env.rawSQL, "SELECT name FROM "+s+".items WHERE id = $1")
		}
		benchData = env
	})
	if benchData == nil {
		b.Fatal("benchmark setup failed")
	}
	return benchData
}

func benchPool(b *testing.B, url string) *pgxpool.Pool {
	b.Helper()
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

// run calls op with a tenant index that rotates over every tenant, serially
// or from parallel goroutines.
func run(b *testing.B, parallel bool, op func(i int) error) {
	// Warm up every connection with every tenant first, so the figures are
	// the steady state and not the first-use prepares (which raw pgx pays
	// too, per schema-qualified SQL).
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < benchTenants*16; i += 4 {
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportAllocs()
	cpu := readCPU()
	defer cpu.report(b)
	b.ResetTimer()
	if !parallel {
		for i := 0; i < b.N; i++ {
			if err := op(i); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	var seq atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		for pb.Next() {
			i++
			if err := op(i); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkQueryRow compares one primary-key read per tenant, tenants
// rotating over 100 schemas:
//
//   - raw: plain pgxpool, schema-qualified SQL, a role that bypasses RLS
//   - scoped: pgtenant (settings + statement in one round trip)
//   - reset: the approach of the Python original, per checkout RESET ALL,
//     SET search_path and set_config, then the statement
func BenchmarkQueryRow(b *testing.B) {
	env := setupBench(b)
	pg := testenv.PostgreSQL(b)
	for _, mode := range []string{"serial", "parallel"} {
		parallel := mode == "parallel"
		b.Run("mode="+mode+"/impl=raw", func(b *testing.B) {
			p := benchPool(b, env.rawURL)
			run(b, parallel, func(i int) error {
				var name string
				return p.QueryRow(context.Background(), env.rawSQL[i%benchTenants], 1+i%benchRows).Scan(&name)
			})
		})
		b.Run("mode="+mode+"/impl=scoped", func(b *testing.B) {
			p := newPool(b, pg, nil)
			run(b, parallel, func(i int) error {
				var name string
				return p.QueryRow(env.ctxs[i%benchTenants], "SELECT name FROM items WHERE id = $1", 1+i%benchRows).Scan(&name)
			})
		})
		b.Run("mode="+mode+"/impl=reset", func(b *testing.B) {
			p := benchPool(b, pg.AppURL)
			run(b, parallel, func(i int) error {
				tn := env.tenants[i%benchTenants]
				ctx := context.Background()
				c, err := p.Acquire(ctx)
				if err != nil {
					return err
				}
				defer c.Release()
				if _, err := c.Exec(ctx, "RESET ALL"); err != nil {
					return err
				}
				if _, err := c.Exec(ctx, "SET search_path TO "+pgx.Identifier{pgtenant.SchemaName(tn)}.Sanitize()+", public"); err != nil {
					return err
				}
				if _, err := c.Exec(ctx, "SELECT set_config('app.tenant_id', $1, false)", tn.ID); err != nil {
					return err
				}
				var name string
				return c.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 1+i%benchRows).Scan(&name)
			})
		})
	}
}

// BenchmarkTx compares a transaction of one read: plain pgx (BEGIN, read,
// COMMIT) against pgtenant, tenants rotating over 100 schemas.
func BenchmarkTx(b *testing.B) {
	env := setupBench(b)
	pg := testenv.PostgreSQL(b)
	for _, mode := range []string{"serial", "parallel"} {
		parallel := mode == "parallel"
		b.Run("mode="+mode+"/impl=raw", func(b *testing.B) {
			p := benchPool(b, env.rawURL)
			run(b, parallel, func(i int) error {
				ctx := context.Background()
				return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
					var name string
					return tx.QueryRow(ctx, env.rawSQL[i%benchTenants], 1+i%benchRows).Scan(&name)
				})
			})
		})
		b.Run("mode="+mode+"/impl=scoped", func(b *testing.B) {
			p := newPool(b, pg, nil)
			run(b, parallel, func(i int) error {
				ctx := env.ctxs[i%benchTenants]
				return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
					var name string
					return tx.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 1+i%benchRows).Scan(&name)
				})
			})
		})
	}
}

// BenchmarkQueryRowExecMode is BenchmarkQueryRow behind a pooler: every
// pool in QueryExecModeExec (proto=exec) or the simple protocol
// (proto=simple), which prepare nothing (PgBouncer's transaction mode), so
// raw and scoped statements are parsed and planned by the server every
// time. raw bypasses RLS; raw-rls is the least an RLS-respecting client
// sends (see below).
func BenchmarkQueryRowExecMode(b *testing.B) {
	env := setupBench(b)
	pg := testenv.PostgreSQL(b)
	for _, proto := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		name := map[pgx.QueryExecMode]string{pgx.QueryExecModeExec: "exec", pgx.QueryExecModeSimpleProtocol: "simple"}[proto]
		b.Run("proto="+name, func(b *testing.B) { benchExecMode(b, env, pg, proto) })
	}
}

func benchExecMode(b *testing.B, env *benchEnv, pg *testenv.PG, proto pgx.QueryExecMode) {
	for _, mode := range []string{"serial", "parallel"} {
		parallel := mode == "parallel"
		b.Run("mode="+mode+"/impl=raw", func(b *testing.B) {
			cfg, err := pgxpool.ParseConfig(env.rawURL)
			if err != nil {
				b.Fatal(err)
			}
			cfg.ConnConfig.DefaultQueryExecMode = proto
			p, err := pgxpool.NewWithConfig(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(p.Close)
			run(b, parallel, func(i int) error {
				var name string
				return p.QueryRow(context.Background(), env.rawSQL[i%benchTenants], 1+i%benchRows).Scan(&name)
			})
		})
		// raw-rls is the least any RLS-respecting pool must send in this
		// mode: the tenant setting and the schema-qualified read in one
		// batch (one round trip), as the app role, whose reads RLS filters.
		b.Run("mode="+mode+"/impl=raw-rls", func(b *testing.B) {
			cfg := pg.AppConfig(b)
			cfg.ConnConfig.DefaultQueryExecMode = proto
			p, err := pgxpool.NewWithConfig(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(p.Close)
			run(b, parallel, func(i int) error {
				batch := &pgx.Batch{}
				batch.Queue("SELECT set_config('app.tenant_id', $1, true)", env.tenants[i%benchTenants].ID)
				var name string
				batch.Queue(env.rawSQL[i%benchTenants], 1+i%benchRows).QueryRow(func(r pgx.Row) error { return r.Scan(&name) })
				return p.SendBatch(context.Background(), batch).Close()
			})
		})
		b.Run("mode="+mode+"/impl=scoped", func(b *testing.B) {
			p := newPool(b, pg, func(c *pgtenant.Config) { c.PoolConfig.ConnConfig.DefaultQueryExecMode = proto })
			run(b, parallel, func(i int) error {
				var name string
				return p.QueryRow(env.ctxs[i%benchTenants], "SELECT name FROM items WHERE id = $1", 1+i%benchRows).Scan(&name)
			})
		})
	}
}

// BenchmarkDatabaseSQL compares a primary-key read through database/sql,
// tenants rotating over 100 schemas: raw is pgx's stdlib on a plain pgxpool
// (schema-qualified SQL, a role that bypasses RLS), scoped is OpenDB on a
// pgtenant pool (scope and statement in one round trip).
func BenchmarkDatabaseSQL(b *testing.B) {
	env := setupBench(b)
	pg := testenv.PostgreSQL(b)
	for _, mode := range []string{"serial", "parallel"} {
		parallel := mode == "parallel"
		b.Run("mode="+mode+"/impl=raw", func(b *testing.B) {
			db := stdlib.OpenDBFromPool(benchPool(b, env.rawURL))
			b.Cleanup(func() { _ = db.Close() })
			run(b, parallel, func(i int) error {
				var name string
				return db.QueryRowContext(context.Background(), env.rawSQL[i%benchTenants], 1+i%benchRows).Scan(&name)
			})
		})
		b.Run("mode="+mode+"/impl=scoped", func(b *testing.B) {
			db := pgtenant.OpenDB(newPool(b, pg, nil))
			b.Cleanup(func() { _ = db.Close() })
			run(b, parallel, func(i int) error {
				var name string
				return db.QueryRowContext(env.ctxs[i%benchTenants], "SELECT name FROM items WHERE id = $1", 1+i%benchRows).Scan(&name)
			})
		})
	}
}

// BenchmarkFirstUse measures what BenchmarkQueryRow's warm-up hides: a
// statement met for the first time on a connection (for pgtenant: for the
// tenant's schema on that connection). Each operation's SQL text is new
// (a numbered comment), so raw pgx prepares it (Parse and Describe, one
// round trip, then the statement) and pgtenant prepares it under the
// tenant's search_path with the scope, then sends scope and statement: both
// pay one extra round trip. Serial, one connection each.
func BenchmarkFirstUse(b *testing.B) {
	env := setupBench(b)
	pg := testenv.PostgreSQL(b)
	b.Run("impl=raw", func(b *testing.B) {
		cfg, err := pgxpool.ParseConfig(env.rawURL)
		if err != nil {
			b.Fatal(err)
		}
		cfg.MaxConns = 1
		p, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var name string
			if err := p.QueryRow(context.Background(), env.rawSQL[i%benchTenants]+" /* "+strconv.Itoa(i)+" */", 1).Scan(&name); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=scoped", func(b *testing.B) {
		p := newPool(b, pg, func(c *pgtenant.Config) { c.PoolConfig.MaxConns = 1 })
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var name string
			if err := p.QueryRow(env.ctxs[i%benchTenants], "SELECT name FROM items WHERE id = $1 /* "+strconv.Itoa(i)+" */", 1).Scan(&name); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCheckedStatement measures the server-side backstop: a read the
// lexer can bound (scoped, the same as BenchmarkQueryRow's) against the same
// read with a function call the lexer does not know (int4larger), which
// runs in a block of its own with the guard after it and the session check
// after the block, all in one round trip; checked-exec and checked-simple
// are the same in QueryExecModeExec and the simple protocol, where nothing
// of the backstop is prepared. raw is plain pgx with the
// checked read's SQL, schema-qualified, as a role that bypasses RLS.
func BenchmarkCheckedStatement(b *testing.B) {
	env := setupBench(b)
	pg := testenv.PostgreSQL(b)
	const checked = "SELECT name FROM items WHERE id = int4larger($1::int, 0)"
	for _, mode := range []string{"serial", "parallel"} {
		parallel := mode == "parallel"
		b.Run("mode="+mode+"/impl=raw", func(b *testing.B) {
			p := benchPool(b, env.rawURL)
			sql := make([]string, benchTenants)
			for i, tn := range env.tenants {
				sql[i] = "SELECT name FROM " + pgx.Identifier{pgtenant.SchemaName(tn)}.Sanitize() + ".items WHERE id = int4larger($1::int, 0)"
			}
			run(b, parallel, func(i int) error {
				var name string
				return p.QueryRow(context.Background(), sql[i%benchTenants], 1+i%benchRows).Scan(&name)
			})
		})
		b.Run("mode="+mode+"/impl=scoped", func(b *testing.B) {
			p := newPool(b, pg, nil)
			run(b, parallel, func(i int) error {
				var name string
				return p.QueryRow(env.ctxs[i%benchTenants], "SELECT name FROM items WHERE id = $1", 1+i%benchRows).Scan(&name)
			})
		})
		for _, impl := range []struct {
			name string
			exec pgx.QueryExecMode
		}{{"checked", pgx.QueryExecModeCacheStatement}, {"checked-exec", pgx.QueryExecModeExec}, {"checked-simple", pgx.QueryExecModeSimpleProtocol}} {
			b.Run("mode="+mode+"/impl="+impl.name, func(b *testing.B) {
				p := newPool(b, pg, func(c *pgtenant.Config) { c.PoolConfig.ConnConfig.DefaultQueryExecMode = impl.exec })
				run(b, parallel, func(i int) error {
					var name string
					return p.QueryRow(env.ctxs[i%benchTenants], checked, 1+i%benchRows).Scan(&name)
				})
			})
		}
	}
}
