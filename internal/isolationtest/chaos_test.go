package isolationtest_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// redisServer runs a dedicated redis-server on port, one that the test may
// kill and start again.
type redisServer struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	out  bytes.Buffer
}

func (r *redisServer) start() {
	r.t.Helper()
	r.out.Reset()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	for range 50 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("redis-server did not start: %s", r.out.String())
}

func (r *redisServer) stop() { _ = r.cmd.Process.Kill(); _ = r.cmd.Wait() }

// TestChaos keeps a mixed load of many tenants running while backends are
// terminated, contexts are cancelled mid-query, handlers panic holding a
// transaction, and the Redis server restarts. No operation may ever see
// another tenant's row or key; errors must surface; afterwards the pool and
// the client work and no goroutines are left behind.
func TestChaos(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	reg, owner := docsRegistry(t, pg, serialDocs)
	tenants := createTenants(t, reg, "chaos", 10)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &redisServer{t: t, port: l.Addr().(*net.TCPAddr).Port}
	l.Close()
	rs.start()
	defer rs.stop()

	baseline := runtime.NumGoroutine()
	appName := "chaos-" + testenv.UniqueID("pool")
	cfg := pg.AppConfig(t)
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{fmt.Sprintf("127.0.0.1:%d", rs.port)}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistenant.New(rc, redistenant.Config{})

	loadCtx, stopLoad := context.WithTimeout(ctx, 3*time.Second)
	defer stopLoad()
	var foreign, okOps, failedOps, panics, cancelled atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; loadCtx.Err() == nil; i++ {
				tn := tenants[(w*3+i)%len(tenants)]
				tctx := tenant.NewContext(ctx, tn)
				var err error
				switch i % 5 {
				case 0: // write and read back through PostgreSQL
					_, err = pool.Exec(tctx, "INSERT INTO docs (body) VALUES ($1)", tn.Slug)
					if err == nil {
						rows, _ := pool.Query(tctx, "SELECT tenant_id FROM docs")
						var ids []string
						ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
						for _, id := range ids {
							if id != tn.ID {
								foreign.Add(1)
							}
						}
					}
				case 1: // cancelled mid-query
					short, cancel := context.WithTimeout(tctx, 5*time.Millisecond)
					_, err = pool.Exec(short, "SELECT pg_sleep(0.05)")
					cancel()
					if err != nil {
						cancelled.Add(1)
						err = nil // expected
					}
				case 2: // a handler panics holding a transaction
					func() {
						defer func() {
							if recover() != nil {
								panics.Add(1)
							}
						}()
						tx, terr := pool.Begin(tctx)
						if terr != nil {
							err = terr
							return
						}
						defer func() { _ = tx.Rollback(context.Background()) }()
						_, _ = tx.Exec(tctx, "INSERT INTO docs (body) VALUES ('never committed')")
						panic("handler bug")
					}()
				case 3, 4: // Redis: the same logical key for every tenant
					err = rdb.Do(tctx, rdb.B().Set().Key("whoami").Value(tn.ID).Build()).Error()
					if err == nil {
						var v string
						v, err = rdb.Do(tctx, rdb.B().Get().Key("whoami").Build()).ToString()
						if err == nil && v != tn.ID {
							foreign.Add(1)
						}
						if rueidis.IsRedisNil(err) { // the restart emptied the server
							err = nil
						}
					}
				}
				if err != nil {
					failedOps.Add(1)
				} else {
					okOps.Add(1)
				}
			}
		})
	}
	wg.Go(func() { // the chaos
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		restarted := false
		start := time.Now()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
			}
			_, _ = owner.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", appName)
			if !restarted && time.Since(start) > time.Second {
				rs.stop()
				time.Sleep(100 * time.Millisecond)
				rs.start()
				restarted = true
			}
		}
	})
	wg.Wait()
	t.Logf("%d ok, %d failed (surfaced to the caller), %d cancelled, %d panics", okOps.Load(), failedOps.Load(), cancelled.Load(), panics.Load())
	if foreign.Load() != 0 {
		t.Errorf("%d cross-tenant rows or keys observed under chaos", foreign.Load())
	}
	if failedOps.Load() == 0 || cancelled.Load() == 0 || panics.Load() == 0 {
		t.Errorf("the chaos did not bite (failed %d, cancelled %d, panics %d): the test proved nothing", failedOps.Load(), cancelled.Load(), panics.Load())
	}
	// Afterwards: the pool and the client are healthy.
	for _, tn := range tenants {
		tctx := tenant.NewContext(ctx, tn)
		var n, never int
		if err := pool.QueryRow(tctx, "SELECT count(*), count(*) FILTER (WHERE body = 'never committed') FROM docs").Scan(&n, &never); err != nil || never != 0 {
			t.Errorf("%s after chaos: %v, %d rows of panicked transactions", tn.Slug, err, never)
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			err := rdb.Do(tctx, rdb.B().Set().Key("after").Value("1").Build()).Error()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("Redis client did not recover: %v", err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// A connection the pool destroys (one whose backend was terminated) is
	// counted as acquired until its asynchronous close has finished.
	held := pool.Stat().AcquiredConns()
	for wait := 0; held != 0 && wait < 40; wait++ {
		time.Sleep(50 * time.Millisecond)
		held = pool.Stat().AcquiredConns()
	}
	if held != 0 {
		t.Errorf("%d connections still held", held)
	}
	pool.Close()
	rc.Close()
	var now int
	for range 50 { // goroutines wind down asynchronously
		if now = runtime.NumGoroutine(); now <= baseline+2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if now > baseline+2 {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines: %d before, %d after\n%s", baseline, now, buf[:runtime.Stack(buf, true)])
	}
}
