package pgtenant_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// routerWorld is a Router over two placements on two servers, each with two
// tenants, and a Locator that reads a map the test changes.
type routerWorld struct {
	router *pgtenant.Router
	pools  map[string]*pgtenant.Pool
	// where says each tenant's placement; moving makes the Locator answer
	// ErrTenantMoving.
	mu      sync.Mutex
	where   map[string]string
	moving  map[string]bool
	locates atomic.Int64
	tenants map[string][]tenant.Tenant
}

func newRouterWorld(t *testing.T, cfg pgtenant.RouterConfig) *routerWorld {
	t.Helper()
	w := &routerWorld{pools: map[string]*pgtenant.Pool{}, where: map[string]string{}, moving: map[string]bool{}, tenants: map[string][]tenant.Tenant{}}
	for name, pg := range map[string]*testenv.PG{"one": testenv.PostgreSQL(t), "two": testenv.SecondPostgreSQL(t)} {
		w.pools[name] = newPool(t, pg, nil)
		w.tenants[name] = createTenants(t, pg, "rt"+name, 2, 3)
		for _, tn := range w.tenants[name] {
			w.where[tn.ID] = name
		}
	}
	cfg.Placements = w.pools
	cfg.Locator = pgtenant.LocatorFunc(func(_ context.Context, tn tenant.Tenant) (string, error) {
		w.locates.Add(1)
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.moving[tn.ID] {
			return w.where[tn.ID], fmt.Errorf("%w: test", pgtenant.ErrTenantMoving)
		}
		name, ok := w.where[tn.ID]
		if !ok {
			return "", tenant.ErrNotFound
		}
		return name, nil
	})
	var err error
	if w.router, err = pgtenant.NewRouter(cfg); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestRouterSendsEveryCallToTheTenantsPlacement runs each kind of call for
// the tenants of both placements and checks the exact rows each sees.
func TestRouterSendsEveryCallToTheTenantsPlacement(t *testing.T) {
	w := newRouterWorld(t, pgtenant.RouterConfig{})
	for name, tenants := range w.tenants {
		for _, tn := range tenants {
			ctx := ctxFor(tn)
			if diff := cmp.Diff(want(tn, 3), names(t, w.router, ctx, "SELECT name FROM items ORDER BY id")); diff != "" {
				t.Errorf("%s in %s, Query:\n%s", tn.Slug, name, diff)
			}
			var n int
			if err := w.router.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
				t.Errorf("%s QueryRow: %d, %v", tn.Slug, n, err)
			}
			br := w.router.SendBatch(ctx, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{{SQL: "SELECT count(*) FROM items"}}})
			if err := br.QueryRow().Scan(&n); err != nil || n != 3 {
				t.Errorf("%s SendBatch: %d, %v", tn.Slug, n, err)
			}
			_ = br.Close()
			tx, err := w.router.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO items (name) VALUES ('tx')"); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			c, err := w.router.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want(tn, 3), names(t, c, ctx, "SELECT name FROM items ORDER BY id")); diff != "" {
				t.Errorf("%s Acquire:\n%s", tn.Slug, diff)
			}
			c.Release()
			if _, err := w.router.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"name"}, pgx.CopyFromRows([][]any{{"copied"}})); err != nil {
				t.Fatalf("%s CopyFrom: %v", tn.Slug, err)
			}
			if _, err := w.router.Exec(ctx, "DELETE FROM items WHERE name = 'copied'"); err != nil {
				t.Fatal(err)
			}
			db := pgtenant.OpenDB(w.router)
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil || n != 3 {
				t.Errorf("%s OpenDB: %d, %v", tn.Slug, n, err)
			}
			_ = db.Close()
			if got, err := w.router.Placement(ctx); err != nil || got != name {
				t.Errorf("%s placed in %q (%v), want %q", tn.Slug, got, err, name)
			}
		}
	}
	if err := w.router.Ping(context.Background()); err != nil {
		t.Errorf("Ping of every placement: %v", err)
	}
}

// TestRouterBehavesLikeItsPool runs the same random programs on a tenant's
// placement pool and through the Router, each in a transaction rolled back,
// and compares every outcome.
func TestRouterBehavesLikeItsPool(t *testing.T) {
	w := newRouterWorld(t, pgtenant.RouterConfig{})
	stmts := []string{
		"SELECT name FROM items ORDER BY id",
		"INSERT INTO items (name) VALUES ('new') RETURNING name",
		"UPDATE items SET name = name || '!' WHERE name LIKE '%2' OR name = 'new' RETURNING name",
		"DELETE FROM items WHERE name LIKE '%-1' RETURNING name",
		"SELECT count(*)::text FROM items",
		"SELECT nosuchcolumn FROM items",
		"SELECT current_setting('app.tenant_id')",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	run := func(db interface {
		Begin(context.Context) (pgx.Tx, error)
	}, ctx context.Context, program []int) []string {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		var out []string
		for _, i := range program {
			sp, err := tx.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rows, _ := sp.Query(ctx, stmts[i])
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				out = append(out, "error "+pgErr.Code)
				_ = sp.Rollback(ctx)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(got))
			_ = sp.Commit(ctx)
		}
		return out
	}
	for round := range 20 {
		program := make([]int, 1+rng.IntN(8))
		for i := range program {
			program[i] = rng.IntN(len(stmts))
		}
		for name, tenants := range w.tenants {
			tn := tenants[round%2]
			ctx := ctxFor(tn)
			if diff := cmp.Diff(run(w.pools[name], ctx, program), run(w.router, ctx, program)); diff != "" {
				t.Errorf("program %v for %s: (-pool +router)\n%s", program, tn.Slug, diff)
			}
		}
	}
}

// TestRouterWaitsOutACutOver holds a call while the Locator says the tenant
// is moving, sends it to the new placement once it is placed, and fails it
// with ErrTenantMoving, before any I/O, when the wait outlasts MoveWait.
func TestRouterWaitsOutACutOver(t *testing.T) {
	w := newRouterWorld(t, pgtenant.RouterConfig{MoveWait: 300 * time.Millisecond})
	tn := w.tenants["one"][0]
	ctx := ctxFor(tn)
	w.mu.Lock()
	w.moving[tn.ID] = true
	w.mu.Unlock()
	before := w.pools["one"].Stat().AcquireCount()
	_, err := w.router.Exec(ctx, "SELECT 1")
	var pe *pgtenant.PlacementError
	if !errors.Is(err, pgtenant.ErrTenantMoving) || !errors.As(err, &pe) || pe.Tenant != tn {
		t.Fatalf("call during a long cut-over: %v", err)
	}
	if after := w.pools["one"].Stat().AcquireCount(); after != before {
		t.Errorf("the refused call took %d connections", after-before)
	}
	// A cut-over that ends within MoveWait: the call waits and succeeds.
	go func() {
		time.Sleep(100 * time.Millisecond)
		w.mu.Lock()
		w.moving[tn.ID] = false
		w.mu.Unlock()
	}()
	if diff := cmp.Diff(want(tn, 3), names(t, w.router, ctx, "SELECT name FROM items ORDER BY id")); diff != "" {
		t.Errorf("after the cut-over:\n%s", diff)
	}
	// A context that ends first ends the wait.
	w.mu.Lock()
	w.moving[tn.ID] = true
	w.mu.Unlock()
	w.router.InvalidateAll()
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := w.router.Exec(cctx, "SELECT 1"); !errors.Is(err, pgtenant.ErrTenantMoving) {
		t.Errorf("cancelled wait: %v", err)
	}
}

// TestRouterCachesUntilInvalidated checks that placements are cached per
// tenant, dropped by Invalidate (ID or slug) and InvalidateAll, and that a
// tenant placed where the Router has no pool is refused by name.
func TestRouterCachesUntilInvalidated(t *testing.T) {
	w := newRouterWorld(t, pgtenant.RouterConfig{TTL: time.Hour})
	tn := w.tenants["one"][1]
	ctx := ctxFor(tn)
	for range 5 {
		if _, err := w.router.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.locates.Load(); n != 1 {
		t.Errorf("5 calls located the tenant %d times, want 1", n)
	}
	w.mu.Lock()
	w.where[tn.ID] = "three"
	w.mu.Unlock()
	if _, err := w.router.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("cached placement: %v", err)
	}
	w.router.Invalidate(tn.Slug)
	var pe *pgtenant.PlacementError
	if _, err := w.router.Exec(ctx, "SELECT 1"); !errors.Is(err, pgtenant.ErrUnknownPlacement) || !errors.As(err, &pe) || pe.Placement != "three" {
		t.Errorf("placement without a pool: %v", err)
	}
	w.mu.Lock()
	w.where[tn.ID] = "one"
	w.mu.Unlock()
	w.router.InvalidateAll()
	if _, err := w.router.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("after InvalidateAll: %v", err)
	}
	if _, err := pgtenant.NewRouter(pgtenant.RouterConfig{}); !errors.Is(err, pgtenant.ErrInvalidConfig) {
		t.Errorf("empty RouterConfig: %v", err)
	}
}
