package goredistenant_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/contrib/goredistenant"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func setupCluster(t *testing.T) (*goredistenant.ClusterClient, *redis.ClusterClient, tenant.Tenant, tenant.Tenant) {
	t.Helper()
	addrs := testenv.RedisCluster(t)
	raw := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	c := goredistenant.NewCluster(redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}), goredistenant.Config{})
	a, b := testenv.Tenant(t, "gca"), testenv.Tenant(t, "gcb")
	t.Cleanup(func() {
		ctx := context.Background()
		for _, tn := range []tenant.Tenant{a, b} {
			for _, k := range clusterKeys(t, raw, tn) {
				raw.Del(ctx, k)
			}
		}
		_ = c.Close()
		_ = raw.Close()
	})
	return c, raw, a, b
}

// clusterKeys lists tn's keys on every master, as the servers hold them.
func clusterKeys(t *testing.T, raw *redis.ClusterClient, tn tenant.Tenant) []string {
	t.Helper()
	var keys []string
	var mu sync.Mutex // ForEachMaster calls fn on every master at once
	err := raw.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
		ks, err := n.Keys(ctx, redistenant.Prefix(tn)+"*").Result()
		mu.Lock()
		keys = append(keys, ks...)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

// TestCluster: the isolation, reply and connection-state cases of the
// standalone client, on a Redis Cluster.
func TestCluster(t *testing.T) {
	c, raw, a, b := setupCluster(t)
	for _, tn := range []tenant.Tenant{a, b} {
		ctx, v := ctxFor(tn), tn.Slug
		// Unprefixed, these keys hash to different slots: MSET would be
		// CROSSSLOT; prefixed they share the tenant's.
		if err := c.MSet(ctx, "x", v, "y", v, "z", v).Err(); err != nil {
			t.Fatalf("%s MSET: %v", tn.Slug, err)
		}
		if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, "n")
			p.RPush(ctx, "list", v)
			return nil
		}); err != nil {
			t.Fatalf("%s TxPipelined: %v", tn.Slug, err)
		}
	}
	want := []string{"list", "n", "x", "y", "z"}
	for _, tn := range []tenant.Tenant{a, b} {
		ctx := ctxFor(tn)
		if diff := cmp.Diff(prefixed(tn, want...), clusterKeys(t, raw, tn)); diff != "" {
			t.Errorf("%s: keys on the cluster (-want +got):\n%s", tn.Slug, diff)
		}
		if got := c.MGet(ctx, "x", "y", "z").Val(); !cmp.Equal(got, []any{tn.Slug, tn.Slug, tn.Slug}) {
			t.Errorf("%s MGET: %v", tn.Slug, got)
		}
		checkListed(t, ctx, c, tn, want)
	}

	ca, cb := ctxFor(a), ctxFor(b)
	// Optimistic transactions on the tenant's node.
	interfere := func() { raw.Set(context.Background(), redistenant.Prefix(a)+"n", "100", 0) }
	if err := incrWatched(ca, c, "n", nil); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if got := c.Get(ca, "n").Val(); got != "2" {
		t.Errorf("after the transaction n = %q, want 2", got)
	}
	if err := incrWatched(ca, c, "n", interfere); !errors.Is(err, redis.TxFailedErr) {
		t.Errorf("a watched key changed: %v, want TxFailedErr", err)
	}
	for name, err := range map[string]error{
		"go-redis's own Watch": c.ClusterClient.Watch(ca, func(*redis.Tx) error { return nil }, redistenant.Prefix(b)+"n"),
		"MULTI alone":          c.Do(ca, "multi").Err(),
		"FLUSHALL":             c.FlushAll(ca).Err(),
		"no tenant":            c.Get(context.Background(), "n").Err(),
	} {
		if err == nil {
			t.Errorf("%s: sent", name)
		}
	}
	// A node client used directly is confined too.
	err := c.ForEachMaster(cb, func(ctx context.Context, n *redis.Client) error {
		if v := n.Get(ctx, "n").Val(); v != "" && v != "1" {
			t.Errorf("b reads %q through a node client", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Purge on the cluster removes every key of b and none of a's.
	if n, err := c.Purge(context.Background(), b); err != nil || n != int64(len(want)) {
		t.Errorf("Purge(b) = %d, %v; want %d", n, err, len(want))
	}
	if got := clusterKeys(t, raw, b); len(got) != 0 {
		t.Errorf("b's keys after Purge: %v", got)
	}
	if got := clusterKeys(t, raw, a); len(got) != len(want) {
		t.Errorf("a's keys after b's Purge: %v", got)
	}

	// Pub/sub, plain and sharded, per tenant; go-redis's own Subscribe of
	// a's channel spelt in full subscribes to nothing.
	subA := c.SSubscribe(ca, "orders")
	defer subA.Close()
	if _, err := subA.Receive(ca); err != nil {
		t.Fatal(err)
	}
	subB := c.Subscribe(cb, "orders")
	defer subB.Close()
	if _, err := subB.Receive(cb); err != nil {
		t.Fatal(err)
	}
	spy := c.ClusterClient.Subscribe(cb, redistenant.Prefix(a)+"orders")
	defer spy.Close()
	c.SPublish(ca, "orders", "for a")
	c.Publish(cb, "orders", "for b")
	ma, err := subA.ReceiveMessage(ca)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := subB.ReceiveMessage(cb)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]redis.Message{{Channel: "orders", Payload: "for a"}, {Channel: "orders", Payload: "for b"}}, []redis.Message{*ma, *mb}); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if err := spy.Subscribe(cb, redistenant.Prefix(a)+"orders"); err == nil || !strings.Contains(err.Error(), "goredistenant") {
		t.Errorf("go-redis's Subscribe of a's channel: %v, want the guard's refusal", err)
	}
	c.Publish(ca, "orders", "for a too")
	sctx, cancel := context.WithTimeout(cb, 300*time.Millisecond)
	defer cancel()
	if m, err := spy.ReceiveMessage(sctx); err == nil {
		t.Errorf("go-redis's Subscribe of a's channel received %+v", m)
	}
	var subscribers atomic.Int64
	if err := raw.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
		subscribers.Add(n.PubSubNumSub(ctx, redistenant.Prefix(a)+"orders").Val()[redistenant.Prefix(a)+"orders"])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := subscribers.Load(); n != 0 {
		t.Errorf("%d subscribers on a's channel (a subscribed to the sharded one only)", n)
	}
}
