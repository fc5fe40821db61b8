package tenant_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenancykit/tenancy/tenant"
)

// clock is a manual time source for CacheConfig.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestCacheServesFromMemoryUntilTTL(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	clk := &clock{now: time.Unix(1000, 0)}
	c := tenant.NewCache(reg, tenant.CacheConfig{TTL: time.Minute, NegativeTTL: time.Second, Now: clk.Now})
	ctx := context.Background()
	for range 3 {
		got, err := c.LookupTenant(ctx, "acme")
		if err != nil || got.ID != "id-acme" {
			t.Fatalf("LookupTenant = %v, %v", got, err)
		}
	}
	if n := reg.calls.Load(); n != 1 {
		t.Fatalf("registry called %d times for 3 lookups within TTL, want 1", n)
	}
	clk.Advance(time.Minute)
	if _, err := c.LookupTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if n := reg.calls.Load(); n != 2 {
		t.Fatalf("registry called %d times after TTL, want 2", n)
	}
}

func TestCacheNegativeEntriesAreShort(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	clk := &clock{now: time.Unix(1000, 0)}
	c := tenant.NewCache(reg, tenant.CacheConfig{TTL: time.Hour, NegativeTTL: 2 * time.Second, Now: clk.Now})
	ctx := context.Background()
	for _, key := range []string{"nobody", "initech"} {
		for range 2 {
			_, err := c.LookupTenant(ctx, key)
			if !errors.Is(err, tenant.ErrNotFound) && !errors.Is(err, tenant.ErrSuspended) {
				t.Fatalf("%s: %v", key, err)
			}
		}
	}
	if n := reg.calls.Load(); n != 2 {
		t.Fatalf("registry called %d times, want 2 (negative answers cached)", n)
	}
	// The tenant is created and initech resumed; after NegativeTTL both are served.
	reg.active["nobody"] = tenant.Tenant{ID: "id-nobody", Slug: "nobody"}
	delete(reg.suspended, "initech")
	reg.active["initech"] = tenant.Tenant{ID: "id-initech", Slug: "initech"}
	clk.Advance(2 * time.Second)
	for _, key := range []string{"nobody", "initech"} {
		if got, err := c.LookupTenant(ctx, key); err != nil || got.Slug != key {
			t.Errorf("%s after negative TTL: %v, %v", key, got, err)
		}
	}
}

func TestCacheDoesNotCacheFailures(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	reg.fail = errors.New("connection refused")
	c := tenant.NewCache(reg, tenant.CacheConfig{})
	ctx := context.Background()
	for range 2 {
		if _, err := c.LookupTenant(ctx, "acme"); err == nil {
			t.Fatal("want the failure")
		}
	}
	reg.fail = nil
	if got, err := c.LookupTenant(ctx, "acme"); err != nil || got.Slug != "acme" {
		t.Fatalf("after recovery: %v, %v", got, err)
	}
	if n := reg.calls.Load(); n != 3 {
		t.Errorf("registry called %d times, want 3", n)
	}
}

func TestCacheInvalidate(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	c := tenant.NewCache(reg, tenant.CacheConfig{TTL: time.Hour})
	ctx := context.Background()
	if _, err := c.LookupTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	reg.suspended["acme"] = true
	if _, err := c.LookupTenant(ctx, "acme"); err != nil {
		t.Fatalf("before Invalidate the cached answer is served: %v", err)
	}
	c.Invalidate("acme")
	if _, err := c.LookupTenant(ctx, "acme"); !errors.Is(err, tenant.ErrSuspended) {
		t.Fatalf("after Invalidate: %v, want ErrSuspended", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	lookup := tenant.LookupFunc(func(_ context.Context, key string) (tenant.Tenant, error) {
		calls.Add(1)
		return tenant.Tenant{ID: key, Slug: "s" + key}, nil
	})
	c := tenant.NewCache(lookup, tenant.CacheConfig{MaxEntries: 3, TTL: time.Hour})
	ctx := context.Background()
	for _, k := range []string{"1", "2", "3", "1", "4"} { // 2 is least recently used when 4 arrives
		if _, err := c.LookupTenant(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	before := calls.Load()
	for _, k := range []string{"1", "3", "4"} {
		_, _ = c.LookupTenant(ctx, k)
	}
	if calls.Load() != before {
		t.Errorf("recently used keys were evicted")
	}
	_, _ = c.LookupTenant(ctx, "2")
	if calls.Load() != before+1 {
		t.Errorf("the least recently used key was not the one evicted")
	}
}

func TestCacheCoalescesConcurrentMisses(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var calls atomic.Int64
	lookup := tenant.LookupFunc(func(_ context.Context, key string) (tenant.Tenant, error) {
		calls.Add(1)
		<-release
		return tenant.Tenant{ID: key, Slug: "acme"}, nil
	})
	c := tenant.NewCache(lookup, tenant.CacheConfig{})
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			got, err := c.LookupTenant(context.Background(), "k1")
			if err == nil && got.ID != "k1" {
				err = fmt.Errorf("got %v", got)
			}
			errs <- err
		})
	}
	// Let the goroutines pile up behind the first call, then release it.
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("underlying lookup called %d times for %d concurrent misses, want 1", got, n)
	}
}

func TestCacheWaiterSurvivesLeaderCancellation(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 2)
	var calls atomic.Int64
	lookup := tenant.LookupFunc(func(ctx context.Context, key string) (tenant.Tenant, error) {
		if calls.Add(1) == 1 {
			started <- struct{}{}
			<-ctx.Done() // the first caller gives up
			return tenant.Tenant{}, ctx.Err()
		}
		return tenant.Tenant{ID: key, Slug: "acme"}, nil
	})
	c := tenant.NewCache(lookup, tenant.CacheConfig{})
	leaderCtx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.LookupTenant(leaderCtx, "k")
		leaderErr <- err
	}()
	<-started
	waiter := make(chan error, 1)
	go func() {
		_, err := c.LookupTenant(context.Background(), "k")
		waiter <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the waiter join the leader's call
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: %v, want context.Canceled", err)
	}
	if err := <-waiter; err != nil {
		t.Errorf("waiter failed with the leader's cancellation: %v", err)
	}
}

func TestCacheWaiterHonoursOwnContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	lookup := tenant.LookupFunc(func(_ context.Context, key string) (tenant.Tenant, error) {
		close(started)
		<-release
		return tenant.Tenant{ID: key, Slug: "acme"}, nil
	})
	c := tenant.NewCache(lookup, tenant.CacheConfig{})
	go func() { _, _ = c.LookupTenant(context.Background(), "k") }()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.LookupTenant(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter: %v, want its own deadline", err)
	}
}

// TestCacheInvalidateDropsEveryNameOfTheTenant: a tenant cached under its
// slug and its ID is dropped under both, whichever name is invalidated, and
// a lookup under way when Invalidate runs does not store its stale answer.
func TestCacheInvalidateDropsEveryNameOfTheTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, name := range []string{"acme", "id-acme"} {
		reg := newRegistry()
		c := tenant.NewCache(reg, tenant.CacheConfig{TTL: time.Hour})
		for _, key := range []string{"acme", "id-acme", "globex"} {
			if _, err := c.LookupTenant(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
		reg.suspended["acme"], reg.suspended["id-acme"] = true, true
		c.Invalidate(name)
		for _, key := range []string{"acme", "id-acme"} {
			if _, err := c.LookupTenant(ctx, key); !errors.Is(err, tenant.ErrSuspended) {
				t.Errorf("Invalidate(%q), then %q: %v, want ErrSuspended", name, key, err)
			}
		}
		calls := reg.calls.Load()
		if _, err := c.LookupTenant(ctx, "globex"); err != nil || reg.calls.Load() != calls {
			t.Errorf("another tenant's entry was dropped too (%v)", err)
		}
	}

	// In flight: the answer read before the invalidation is not stored.
	release := make(chan struct{})
	var calls atomic.Int64
	c := tenant.NewCache(tenant.LookupFunc(func(ctx context.Context, key string) (tenant.Tenant, error) {
		if calls.Add(1) == 1 {
			<-release
			return tenant.Tenant{ID: "id-acme", Slug: "acme"}, nil // stale: it was suspended meanwhile
		}
		return tenant.Tenant{}, tenant.ErrSuspended
	}), tenant.CacheConfig{TTL: time.Hour})
	done := make(chan struct{})
	go func() { _, _ = c.LookupTenant(ctx, "acme"); close(done) }()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	c.Invalidate("acme")
	close(release)
	<-done
	if _, err := c.LookupTenant(ctx, "acme"); !errors.Is(err, tenant.ErrSuspended) {
		t.Errorf("after an invalidation during a lookup: %v, want ErrSuspended", err)
	}
}
