package redistenant_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidiscompat"
	"github.com/redis/rueidis/rueidislock"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// TestBoundClient: a handle from For confines calls whose context carries
// no tenant to its tenant, refuses a context naming another one, confines
// dedicated connections alike, and closing it leaves the shared client open.
func TestBoundClient(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	ba, err := c.For(a)
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	if err := ba.Do(bg, ba.B().Set().Key("k").Value("from-a").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := ba.Dedicated(func(dc rueidis.DedicatedClient) error {
		return dc.Do(bg, dc.B().Set().Key("d").Value("dedicated").Build()).Error()
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{redistenant.Prefix(a) + "d", redistenant.Prefix(a) + "k"}, rawKeys(t, raw, a)); diff != "" {
		t.Errorf("keys of a (-want +got):\n%s", diff)
	}
	if got := rawKeys(t, raw, b); len(got) != 0 {
		t.Errorf("keys of b: %v", got)
	}
	if err := ba.Do(ctxFor(b), ba.B().Get().Key("k").Build()).Error(); !errors.Is(err, redistenant.ErrTenantMismatch) {
		t.Errorf("b's context on a's handle: %v, want ErrTenantMismatch", err)
	}
	if v, err := ba.Do(ctxFor(a), ba.B().Get().Key("k").Build()).ToString(); err != nil || v != "from-a" {
		t.Errorf("a's context on a's handle: %q, %v", v, err)
	}
	// Commands that reach beyond the tenant are refused as on the Client.
	if err := ba.Do(bg, ba.B().Flushall().Build()).Error(); !errors.Is(err, redistenant.ErrCommandNotAllowed) {
		t.Errorf("FLUSHALL on a handle: %v", err)
	}
	ba.Close()
	if err := c.Do(ctxFor(a), c.B().Get().Key("k").Build()).Error(); err != nil {
		t.Errorf("the shared client after closing a handle: %v", err)
	}
	if _, err := c.For(tenant.Tenant{ID: "bad id", Slug: "x"}); err == nil {
		t.Error("For accepted an invalid tenant")
	}
}

// TestClientBuilderInvalidations: a client made by ClientBuilder delivers
// client-side caching invalidations of its tenant's keys without the
// prefix, as code written for plain rueidis expects them.
func TestClientBuilderInvalidations(t *testing.T) {
	t.Parallel()
	c, _, a, _ := setup(t)
	got := make(chan []string, 8)
	opt := rueidis.ClientOption{InitAddress: []string{testenv.Redis(t)}, OnInvalidations: func(msgs []rueidis.RedisMessage) {
		var keys []string
		for _, m := range msgs {
			s, _ := m.ToString()
			keys = append(keys, s)
		}
		got <- keys
	}}
	bc, err := redistenant.ClientBuilder(a, redistenant.Config{})(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	bg := context.Background()
	if err := bc.Do(bg, bc.B().Set().Key("cached").Value("1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if v, err := bc.DoCache(bg, bc.B().Get().Key("cached").Cache(), time.Minute).ToString(); err != nil || v != "1" {
		t.Fatalf("DoCache: %q, %v", v, err)
	}
	// Another client changes the key: the server invalidates it.
	if err := c.Do(ctxFor(a), c.B().Set().Key("cached").Value("2").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	select {
	case keys := <-got:
		if diff := cmp.Diff([]string{"cached"}, keys); diff != "" {
			t.Errorf("invalidated keys (-want +got):\n%s", diff)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no invalidation arrived")
	}
}

// TestRueidislockPerTenant: rueidislock on clients from ClientBuilder — one
// lock name is a different lock in each tenant, a lock is released by
// rueidislock's own background-context calls, and a waiter in the same
// tenant gets the lock once it is released, long before the lock's keys
// would expire on their own.
func TestRueidislockPerTenant(t *testing.T) {
	t.Parallel()
	_, raw, a, b := setup(t)
	locker := func(tn tenant.Tenant) rueidislock.Locker {
		l, err := rueidislock.NewLocker(rueidislock.LockerOption{
			ClientOption:  rueidis.ClientOption{InitAddress: []string{testenv.Redis(t)}},
			ClientBuilder: redistenant.ClientBuilder(tn, redistenant.Config{}),
			KeyMajority:   1,
			KeyValidity:   time.Minute, // a waiter that needed expiry would time out below
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		return l
	}
	la, lb := locker(a), locker(b)
	bg := context.Background()
	_, releaseA, err := la.WithContext(bg, "job")
	if err != nil {
		t.Fatal(err)
	}
	// The same name in tenant b is another lock.
	lockB, releaseB, err := lb.TryWithContext(bg, "job")
	if err != nil {
		t.Fatalf("tenant b's lock of the same name: %v", err)
	}
	if lockB.Err() != nil {
		t.Fatalf("b's lock context: %v", lockB.Err())
	}
	releaseB()
	// In tenant a the lock is taken.
	if _, _, err := la.TryWithContext(bg, "job"); !errors.Is(err, rueidislock.ErrNotLocked) {
		t.Fatalf("second lock in tenant a: %v, want ErrNotLocked", err)
	}
	if keys := rawKeys(t, raw, a); len(keys) == 0 {
		t.Error("no lock key under tenant a's prefix")
	}
	var wg sync.WaitGroup
	var waitErr error
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(bg, 20*time.Second)
		defer cancel()
		_, release, err := la.WithContext(ctx, "job")
		if err == nil {
			release()
		}
		waitErr = err
	})
	time.Sleep(200 * time.Millisecond) // let the waiter block
	releaseA()
	wg.Wait()
	if waitErr != nil {
		t.Errorf("a waiter after the release: %v (keys validity is a minute: the release did not reach Redis, or the waiter was not woken)", waitErr)
	}
}

// TestRueidiscompatOnBound: rueidiscompat's go-redis-style API on a bound
// handle reads and writes the tenant's keys; the key names its Scan and
// Keys return carry the prefix (replies are not rewritten).
func TestRueidiscompatOnBound(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	ba, err := c.For(a)
	if err != nil {
		t.Fatal(err)
	}
	rdb := rueidiscompat.NewAdapter(ba)
	ctx := context.Background()
	if err := rdb.Set(ctx, "counter", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Incr(ctx, "counter").Result(); err != nil || n != 2 {
		t.Errorf("Incr: %d, %v", n, err)
	}
	if err := rdb.HSet(ctx, "h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.HGet(ctx, "h", "f").Result(); err != nil || v != "v" {
		t.Errorf("HGet: %q, %v", v, err)
	}
	if diff := cmp.Diff([]string{redistenant.Prefix(a) + "counter", redistenant.Prefix(a) + "h"}, rawKeys(t, raw, a)); diff != "" {
		t.Errorf("keys of a (-want +got):\n%s", diff)
	}
	if got := rawKeys(t, raw, b); len(got) != 0 {
		t.Errorf("keys of b: %v", got)
	}
	var keys []string
	for cursor := uint64(0); ; { // SCAN visits part of the keyspace per call
		page, next, err := rdb.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, page...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	for _, k := range keys {
		if _, ok := c.Strip(ctxFor(a), k); !ok {
			t.Errorf("Scan returned %q, outside a's namespace", k)
		}
	}
	if len(keys) != 2 {
		t.Errorf("Scan returned %v; want a's two keys, prefixed", keys)
	}
}
