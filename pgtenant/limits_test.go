package pgtenant_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// heldCounter is an Observer that counts the connections each tenant holds
// and remembers the most it ever held at once.
type heldCounter struct {
	mu       sync.Mutex
	held     map[string]int
	peak     map[string]int
	acquired map[string]int
	failed   map[string][]error
	waits    map[string]time.Duration
}

func newHeldCounter() *heldCounter {
	return &heldCounter{held: map[string]int{}, peak: map[string]int{}, acquired: map[string]int{}, failed: map[string][]error{}, waits: map[string]time.Duration{}}
}

func (h *heldCounter) Acquired(_ context.Context, t tenant.Tenant, wait time.Duration, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.failed[t.ID] = append(h.failed[t.ID], err)
		return
	}
	h.acquired[t.ID]++
	h.waits[t.ID] += wait
	h.held[t.ID]++
	h.peak[t.ID] = max(h.peak[t.ID], h.held[t.ID])
}

func (h *heldCounter) Released(t tenant.Tenant, _ time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held[t.ID]--
}

func (h *heldCounter) snapshot() (held, peak map[string]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	held, peak = map[string]int{}, map[string]int{}
	for k, v := range h.held {
		held[k] = v
	}
	for k, v := range h.peak {
		peak[k] = v
	}
	return held, peak
}

// serverHeld counts the server sessions that run a statement for each
// tenant now, by the application_name TagSessions gives them.
func serverHeld(t *testing.T, owner *pgxpool.Pool, tags map[string]string) map[string]int {
	t.Helper()
	got := map[string]int{}
	rows, err := owner.Query(context.Background(), "SELECT application_name, count(*) FROM pg_stat_activity WHERE application_name LIKE 'tenant:%' GROUP BY 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		if id, ok := tags[name]; ok {
			got[id] = n
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestNoisyTenantNeverHoldsMoreThanItsBudget: one tenant with 32 callers of
// slow statements, four quiet tenants, MaxConns 8 and the fair share (2):
// the noisy tenant never holds more than 2 connections (counted by the
// Observer and, while it runs, on the server by application_name), and
// every quiet tenant's statements complete while it is busy.
func TestNoisyTenantNeverHoldsMoreThanItsBudget(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "noisy", 5, 2)
	noisy, quiet := tenants[0], tenants[1:]
	obs := newHeldCounter()
	cfg := pg.AppConfig(t)
	cfg.MaxConns = 8
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig = cfg
		c.TenantLimits = &pgtenant.TenantLimits{}
		c.Observer = obs
		c.TagSessions = true
	})
	tags := map[string]string{}
	for _, tn := range tenants {
		tags[pgtenant.SessionTag(tn)] = tn.ID
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var noisyDone atomic.Int64
	for range 32 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := p.Exec(tenant.NewContext(ctx, noisy), "SELECT pg_sleep(0.05)"); err != nil {
					t.Errorf("noisy: %v", err)
					return
				}
				noisyDone.Add(1)
			}
		})
	}
	// While the noisy tenant is busy, the server never serves it on more
	// than 2 sessions, and each quiet tenant gets its rows.
	owner := pg.OwnerPool(t)
	deadline := time.Now().Add(2 * time.Second)
	serverPeak := 0
	for time.Now().Before(deadline) {
		serverPeak = max(serverPeak, serverHeld(t, owner, tags)[noisy.ID])
		for _, q := range quiet {
			got := names(t, p, tenant.NewContext(ctx, q), "SELECT name FROM items ORDER BY id")
			if diff := cmp.Diff(want(q, 2), got); diff != "" {
				t.Fatalf("quiet tenant %s (-want +got):\n%s", q.Slug, diff)
			}
		}
	}
	close(stop)
	wg.Wait()
	if serverPeak == 0 || serverPeak > 2 {
		t.Errorf("the server served the noisy tenant on at most %d sessions at once; want 1 or 2", serverPeak)
	}
	held, peak := obs.snapshot()
	if peak[noisy.ID] != 2 {
		t.Errorf("noisy tenant held at most %d connections at once; want exactly its budget, 2", peak[noisy.ID])
	}
	for _, tn := range tenants {
		if held[tn.ID] != 0 {
			t.Errorf("tenant %s still holds %d connections", tn.Slug, held[tn.ID])
		}
	}
	if noisyDone.Load() == 0 {
		t.Error("the noisy tenant ran nothing")
	}
}

// TestTenantLimitsTiers: a tier raises one tenant's budget; LimitFail
// returns a *LimitError at once; the wait is bounded by the context.
func TestTenantLimitsTiers(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "tiers", 3, 1)
	basic, gold, strict := tenants[0], tenants[1], tenants[2]
	cfg := pg.AppConfig(t)
	cfg.MaxConns = 8
	obs := newHeldCounter()
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig = cfg
		c.Observer = obs
		c.TenantLimits = &pgtenant.TenantLimits{
			Default: pgtenant.Limits{MaxConns: 1},
			For: func(tn tenant.Tenant) (pgtenant.Limits, bool) {
				switch tn.ID {
				case gold.ID:
					return pgtenant.Limits{MaxConns: 3}, true
				case strict.ID:
					return pgtenant.Limits{OnLimit: pgtenant.LimitFail}, true
				}
				return pgtenant.Limits{}, false
			},
		}
	})
	ctx := context.Background()

	// hold takes n transactions of tn and keeps them open.
	hold := func(tn tenant.Tenant, n int) []pgx.Tx {
		var txs []pgx.Tx
		for range n {
			tx, err := p.Begin(tenant.NewContext(ctx, tn))
			if err != nil {
				t.Fatalf("%s: %v", tn.Slug, err)
			}
			txs = append(txs, tx)
		}
		return txs
	}
	goldTxs := hold(gold, 3)
	basicTxs := hold(basic, 1)
	strictTxs := hold(strict, 1)

	// Over budget: gold's fourth and basic's second wait until the
	// context ends; strict's second fails at once.
	for _, tn := range []tenant.Tenant{gold, basic} {
		wctx, cancel := context.WithTimeout(tenant.NewContext(ctx, tn), 100*time.Millisecond)
		_, err := p.Exec(wctx, "SELECT 1")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s over its budget: %v; want context.DeadlineExceeded", tn.Slug, err)
		}
	}
	_, err := p.Exec(tenant.NewContext(ctx, strict), "SELECT 1")
	var le *pgtenant.LimitError
	if !errors.As(err, &le) || !errors.Is(err, pgtenant.ErrTenantLimit) || le.Tenant != strict || le.MaxConns != 1 {
		t.Errorf("strict over its budget: %v; want a *LimitError for %s, MaxConns 1", err, strict)
	}
	// Acquire honours the budget too.
	actx, cancel := context.WithTimeout(tenant.NewContext(ctx, basic), 100*time.Millisecond)
	if _, err := p.Acquire(actx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire over the budget: %v; want context.DeadlineExceeded", err)
	}
	cancel()

	// A waiter is served as soon as its tenant returns a connection.
	done := make(chan error, 1)
	go func() {
		_, err := p.Exec(tenant.NewContext(ctx, basic), "SELECT 1")
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("basic's second statement ran over its budget (err %v)", err)
	default:
	}
	if err := basicTxs[0].Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, tx := range append(goldTxs, strictTxs...) {
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, peak := obs.snapshot()
	if diff := cmp.Diff(map[string]int{basic.ID: 1, gold.ID: 3, strict.ID: 1}, peak); diff != "" {
		t.Errorf("peak connections per tenant (-want +got):\n%s", diff)
	}
}

// TestTenantStatementTimeoutPerTier: each tier's statement_timeout cancels
// its statements (57014) in every path — pool, Tx, batch, Conn — and the
// others keep the session's.
func TestTenantStatementTimeoutPerTier(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "tmo", 2, 1)
	fast, patient := tenants[0], tenants[1]
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg := pg.AppConfig(t)
			cfg.ConnConfig.DefaultQueryExecMode = mode
			p := newPool(t, pg, func(c *pgtenant.Config) {
				c.PoolConfig = cfg
				c.TenantLimits = &pgtenant.TenantLimits{
					Default: pgtenant.Limits{MaxConns: 4},
					For: func(tn tenant.Tenant) (pgtenant.Limits, bool) {
						if tn == fast {
							return pgtenant.Limits{StatementTimeout: 50 * time.Millisecond}, true
						}
						return pgtenant.Limits{}, false
					},
				}
			})
			ctx := context.Background()
			fctx, pctx := tenant.NewContext(ctx, fast), tenant.NewContext(ctx, patient)
			isTimeout := func(what string, err error) {
				t.Helper()
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
					t.Errorf("%s: %v; want SQLSTATE 57014 (statement timeout)", what, err)
				}
			}
			_, err := p.Exec(fctx, "SELECT pg_sleep(0.5)")
			isTimeout("pool Exec", err)
			var one int
			isTimeout("pool QueryRow", p.QueryRow(fctx, "SELECT 1 FROM pg_sleep(0.5)").Scan(&one))
			tx, err := p.Begin(fctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(fctx, "SELECT pg_sleep(0.5)")
			isTimeout("Tx Exec", err)
			_ = tx.Rollback(ctx)
			br := p.SendBatch(fctx, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{{SQL: "SELECT pg_sleep(0.5)"}}})
			_, err = br.Exec()
			isTimeout("batch", err)
			_ = br.Close()
			conn, err := p.Acquire(fctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = conn.Exec(fctx, "SELECT pg_sleep(0.5)")
			isTimeout("Conn Exec", err)
			conn.Release()

			// The patient tenant keeps the session's statement_timeout
			// (0), also on the connections the fast one used.
			for range 4 {
				var got string
				if err := p.QueryRow(pctx, "SELECT current_setting('statement_timeout') FROM pg_sleep(0.1)").Scan(&got); err != nil {
					t.Fatalf("patient: %v", err)
				}
				if got != "0" {
					t.Errorf("patient tenant's statement_timeout = %q; want the session's, 0", got)
				}
			}
			// And the fast one's setting is what its tier says.
			var got string
			if err := p.QueryRow(fctx, "SELECT current_setting('statement_timeout')").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != "50ms" {
				t.Errorf("fast tenant's statement_timeout = %q; want 50ms", got)
			}
			// Nothing stays on the session: an unscoped statement on the
			// pool's connections sees the default.
			if err := p.Unscoped().QueryRow(ctx, "SELECT current_setting('statement_timeout')").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != "0" {
				t.Errorf("unscoped statement_timeout = %q; want 0", got)
			}
		})
	}
}

// TestTagSessionsNamesTheTenant: with TagSessions, pg_stat_activity shows
// each running statement's tenant; without a statement the session's own
// application_name is back.
func TestTagSessionsNamesTheTenant(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "tag", 2, 1)
	cfg := pg.AppConfig(t)
	cfg.ConnConfig.RuntimeParams["application_name"] = "tag-test-base"
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig = cfg
		c.TagSessions = true
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, tn := range tenants {
		wg.Go(func() {
			if _, err := p.Exec(tenant.NewContext(ctx, tn), "SELECT pg_sleep(1)"); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(400 * time.Millisecond)
	tags := map[string]string{}
	for _, tn := range tenants {
		tags[pgtenant.SessionTag(tn)] = tn.ID
	}
	got := serverHeld(t, pg.OwnerPool(t), tags)
	wg.Wait()
	if diff := cmp.Diff(map[string]int{tenants[0].ID: 1, tenants[1].ID: 1}, got); diff != "" {
		t.Errorf("sessions per tenant in pg_stat_activity (-want +got):\n%s", diff)
	}
	var name string
	if err := p.QueryRow(tenant.NewContext(ctx, tenants[0]), "SELECT current_setting('application_name')").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != pgtenant.SessionTag(tenants[0]) {
		t.Errorf("application_name in the statement = %q; want %q", name, pgtenant.SessionTag(tenants[0]))
	}
	if err := p.Unscoped().QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "tag-test-base" {
		t.Errorf("application_name after the statement = %q; want the session's, tag-test-base", name)
	}
}

func TestTenantLimitsInvalid(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	for _, l := range []pgtenant.Limits{{MaxConns: -1}, {StatementTimeout: -time.Second}, {OnLimit: 7}} {
		_, err := pgtenant.New(context.Background(), pgtenant.Config{PoolConfig: pg.AppConfig(t), TenantLimits: &pgtenant.TenantLimits{Default: l}})
		if !errors.Is(err, pgtenant.ErrInvalidConfig) {
			t.Errorf("Default %+v: %v; want ErrInvalidConfig", l, err)
		}
	}
}

// TestUnscopedCountsAgainstTheBudgets: connections out through Unscoped
// count against the pool's total, so the tenants waiting for the rest are
// still served in turn: with 7 of 8 connections held unscoped, tenant a's
// four waiting callers queued before b's one, and one connection coming
// back at a time, b is served second, not fifth (as it would be in
// pgxpool's own first-come queue).
func TestUnscopedCountsAgainstTheBudgets(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "unscoped", 2, 1)
	a, b := tenants[0], tenants[1]
	cfg := pg.AppConfig(t)
	cfg.MaxConns = 8
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig = cfg
		c.TenantLimits = &pgtenant.TenantLimits{Default: pgtenant.Limits{MaxConns: 8}}
	})
	ctx := context.Background()
	var held []pgx.Tx
	for range 7 {
		tx, err := p.Unscoped().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tx)
	}
	// a holds the eighth.
	atx, err := p.Begin(tenant.NewContext(ctx, a))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	start := func(tn tenant.Tenant, name string) {
		wg.Go(func() {
			if _, err := p.Exec(tenant.NewContext(ctx, tn), "SELECT 1"); err != nil {
				t.Error(err)
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
		})
		time.Sleep(30 * time.Millisecond)
	}
	for range 4 {
		start(a, "a")
	}
	start(b, "b")
	// One connection back: the callers then pass it on one by one.
	if err := held[0].Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if diff := cmp.Diff([]string{"a", "b", "a", "a", "a"}, order); diff != "" {
		t.Errorf("completion order (-want +got):\n%s", diff)
	}
	_ = atx.Rollback(ctx)
	for _, tx := range held[1:] {
		_ = tx.Rollback(ctx)
	}
}

// sqlTracer records the SQL of every traced query.
type sqlTracer struct {
	mu  sync.Mutex
	sql []string
}

func (s *sqlTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s.mu.Lock()
	s.sql = append(s.sql, d.SQL)
	s.mu.Unlock()
	return ctx
}

func (s *sqlTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestTenantLimitsKeepTheTracer: with limits on, the pool's tracer still
// sees both the tenants' statements and the Unscoped pool's.
func TestTenantLimitsKeepTheTracer(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "limtrace", 1, 1)[0]
	tr := &sqlTracer{}
	cfg := pg.AppConfig(t)
	cfg.ConnConfig.Tracer = tr
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig = cfg
		c.TenantLimits = &pgtenant.TenantLimits{}
	})
	if _, err := p.Exec(tenant.NewContext(context.Background(), tn), "SELECT 'tenant'"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Unscoped().Exec(context.Background(), "SELECT 'unscoped'"); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, want := range []string{"SELECT 'tenant'", "SELECT 'unscoped'"} {
		if !slices.Contains(tr.sql, want) {
			t.Errorf("the tracer did not see %q; saw %q", want, tr.sql)
		}
	}
}

// TestStatementTimeoutWithCheckedStatements: the tenant's statement_timeout
// is set by the pool itself, so the server-side backstop does not take it
// for a statement's change of the session: checked statements (a function
// call the lexer cannot bound) work on the pool, in a Tx and on a Conn,
// with limits and TagSessions on, and leave the connection reusable.
func TestStatementTimeoutWithCheckedStatements(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "tmochk", 1, 2)[0]
	cfg := pg.AppConfig(t)
	cfg.MaxConns = 1
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig = cfg
		c.TagSessions = true
		c.TenantLimits = &pgtenant.TenantLimits{Default: pgtenant.Limits{StatementTimeout: 2 * time.Second}}
	})
	ctx := tenant.NewContext(context.Background(), tn)
	const checked = "SELECT name FROM items WHERE id = int4larger($1::int, 0)"
	var pid1, pid2 int
	if err := p.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := p.QueryRow(ctx, checked, 1).Scan(&name); err != nil || name != tn.Slug+"-1" {
		t.Fatalf("pool: %q, %v", name, err)
	}
	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, checked, 2).Scan(&name); err != nil || name != tn.Slug+"-2" {
		t.Fatalf("tx: %q, %v", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, checked, 1).Scan(&name); err != nil || name != tn.Slug+"-1" {
		t.Fatalf("conn: %q, %v", name, err)
	}
	conn.Release()
	if err := p.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
		t.Fatal(err)
	}
	if pid1 != pid2 {
		t.Errorf("the connection was replaced (backend %d, then %d): the backstop took the pool's own settings for a statement's", pid1, pid2)
	}
}
