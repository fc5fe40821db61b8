package goredistenant_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/contrib/goredistenant"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// setup returns a confined client, an unconfined one for looking at what
// the server holds, and two tenants whose keys are deleted at the end.
func setup(t *testing.T, opt ...func(*redis.Options)) (*goredistenant.Client, *redis.Client, tenant.Tenant, tenant.Tenant) {
	t.Helper()
	addr := testenv.Redis(t)
	o := &redis.Options{Addr: addr}
	for _, f := range opt {
		f(o)
	}
	raw := redis.NewClient(&redis.Options{Addr: addr})
	c := goredistenant.New(redis.NewClient(o), goredistenant.Config{})
	a, b := testenv.Tenant(t, "ga"), testenv.Tenant(t, "gb")
	t.Cleanup(func() {
		for _, tn := range []tenant.Tenant{a, b} {
			for _, k := range rawKeys(t, raw, tn) {
				raw.Del(context.Background(), k)
			}
		}
		_ = c.Close()
		_ = raw.Close()
	})
	return c, raw, a, b
}

func ctxFor(tn tenant.Tenant) context.Context { return tenant.NewContext(context.Background(), tn) }

// rawKeys lists every key of tn as the server holds it.
func rawKeys(t *testing.T, raw *redis.Client, tn tenant.Tenant) []string {
	t.Helper()
	keys, err := raw.Keys(context.Background(), redistenant.Prefix(tn)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

func prefixed(tn tenant.Tenant, keys ...string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = redistenant.Prefix(tn) + k
	}
	sort.Strings(out)
	return out
}

var dataKeys = []string{"hash", "list", "m1", "m2", "n", "set", "str", "stream", "zset"}

func seed(t *testing.T, c *goredistenant.Client, tn tenant.Tenant) {
	t.Helper()
	ctx, v := ctxFor(tn), tn.Slug
	for _, cmd := range []redis.Cmder{
		c.Set(ctx, "str", v, 0),
		c.HSet(ctx, "hash", "f", v),
		c.RPush(ctx, "list", v),
		c.SAdd(ctx, "set", v),
		c.ZAdd(ctx, "zset", redis.Z{Score: 1, Member: v}),
		c.XAdd(ctx, &redis.XAddArgs{Stream: "stream", ID: "1-1", Values: []string{"f", v}}),
		c.MSet(ctx, "m1", v, "m2", v),
		c.Incr(ctx, "n"),
	} {
		if err := cmd.Err(); err != nil {
			t.Fatalf("%v: %v", cmd.Args(), err)
		}
	}
}

func TestTenantsSeeOnlyTheirKeys(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	seed(t, c, a)
	seed(t, c, b)
	for _, tn := range []tenant.Tenant{a, b} {
		ctx, v := ctxFor(tn), tn.Slug
		if diff := cmp.Diff(prefixed(tn, dataKeys...), rawKeys(t, raw, tn)); diff != "" {
			t.Errorf("%s: keys on the server (-want +got):\n%s", tn.Slug, diff)
		}
		got := []any{
			c.Get(ctx, "str").Val(), c.HGetAll(ctx, "hash").Val(), c.LRange(ctx, "list", 0, -1).Val(),
			c.SMembers(ctx, "set").Val(), c.ZRange(ctx, "zset", 0, -1).Val(), c.XRange(ctx, "stream", "-", "+").Val()[0].Values,
			c.MGet(ctx, "m1", "m2").Val(), c.Get(ctx, "n").Val(),
		}
		want := []any{
			v, map[string]string{"f": v}, []string{v}, []string{v}, []string{v}, map[string]any{"f": v},
			[]any{v, v}, "1",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s reads (-want +got):\n%s", tn.Slug, diff)
		}
		checkListed(t, ctx, c, tn, dataKeys)
		if got := c.Exists(ctx, strings.TrimSuffix(redistenant.Prefix(otherOf(tn, a, b)), ":")+":str").Val(); got != 0 {
			t.Errorf("%s sees the other tenant's key spelt in full", tn.Slug)
		}
	}
	// Scan then Del deletes a's keys, every one of them, and none of b's.
	ctx := ctxFor(a)
	page, _ := c.Scan(ctx, 0, "*", 1<<20).Val() // one page over the whole keyspace
	if n := c.Del(ctx, page...).Val(); n != int64(len(dataKeys)) {
		t.Errorf("scan then del deleted %d keys, want %d", n, len(dataKeys))
	}
	if got := rawKeys(t, raw, a); len(got) != 0 {
		t.Errorf("a's keys left: %v", got)
	}
	if diff := cmp.Diff(prefixed(b, dataKeys...), rawKeys(t, raw, b)); diff != "" {
		t.Errorf("b's keys after a's delete (-want +got):\n%s", diff)
	}
	// Purge removes every key of b, in batches, and only b's.
	for i := range 1200 {
		c.Set(ctxFor(b), fmt.Sprint("bulk", i), "v", 0)
	}
	c.Set(ctx, "kept", "v", 0)
	n, err := c.Purge(context.Background(), b)
	if err != nil || n != int64(len(dataKeys)+1200) {
		t.Errorf("Purge(b) = %d, %v; want %d keys", n, err, len(dataKeys)+1200)
	}
	if got := rawKeys(t, raw, b); len(got) != 0 {
		t.Errorf("b's keys after Purge: %d left", len(got))
	}
	if diff := cmp.Diff(prefixed(a, "kept"), rawKeys(t, raw, a)); diff != "" {
		t.Errorf("a's keys after b's Purge (-want +got):\n%s", diff)
	}
}

func otherOf(tn, a, b tenant.Tenant) tenant.Tenant {
	if tn.ID == a.ID {
		return b
	}
	return a
}

func TestRepliesWithKeysAreStripped(t *testing.T) {
	t.Parallel()
	c, _, a, _ := setup(t)
	ctx := ctxFor(a)
	c.RPush(ctx, "l1", "x", "y", "z", "w", "v")
	c.ZAdd(ctx, "z1", redis.Z{Score: 1, Member: "m"}, redis.Z{Score: 2, Member: "n"}, redis.Z{Score: 3, Member: "o"})
	c.XAdd(ctx, &redis.XAddArgs{Stream: "s1", ID: "1-1", Values: []string{"f", "v"}})
	got := map[string]any{}
	got["blpop"] = c.BLPop(ctx, time.Second, "l0", "l1").Val()
	got["brpop"] = c.BRPop(ctx, time.Second, "l1").Val()
	k, vals := c.LMPop(ctx, "left", 1, "l0", "l1").Val()
	got["lmpop"] = []any{k, vals}
	z := c.BZPopMin(ctx, time.Second, "z0", "z1").Val()
	got["bzpopmin"] = z.Key
	zk, _ := c.ZMPop(ctx, "min", 1, "z1").Val()
	got["zmpop"] = zk
	xs := c.XRead(ctx, &redis.XReadArgs{Streams: []string{"s1", "0"}, Count: 1}).Val()
	got["xread"] = xs[0].Stream
	got["do keys"] = c.Do(ctx, "keys", "l*").Val()
	got["do blpop"] = c.Do(ctx, "blpop", "l1", 1).Val()
	c.RPush(ctx, "only", "v")
	scan := c.Do(ctx, "scan", 0, "match", "only", "count", 1<<20).Val().([]any)
	got["do scan"] = scan[1]
	typed, _ := c.ScanType(ctx, 0, "", 1<<20, "list").Val()
	sort.Strings(typed)
	got["scantype list"] = typed
	c.HSet(ctx, "h1", "f1", "v1", "g1", "v2")
	fields, _ := c.HScan(ctx, "h1", 0, "f*", 100).Val()
	got["hscan"] = fields
	want := map[string]any{
		"scantype list": []string{"l1", "only"}, "hscan": []string{"f1", "v1"},
		"blpop": []string{"l1", "x"}, "brpop": []string{"l1", "v"}, "lmpop": []any{"l1", []string{"y"}},
		"bzpopmin": "z1", "zmpop": "z1", "xread": "s1", "do keys": []any{"l1"}, "do blpop": []any{"l1", "z"}, "do scan": []any{"only"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replies (-want +got):\n%s", diff)
	}
}

func TestNoTenantSendsNothing(t *testing.T) {
	t.Parallel()
	c, raw, _, _ := setup(t)
	ctx := context.Background()
	key := "gr_notenant_" + testenv.UniqueID("k")
	if err := c.Set(ctx, key, "v", 0).Err(); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("Set without a tenant: %v, want ErrNoTenant", err)
	}
	if err := c.Client.Set(ctx, key, "v", 0).Err(); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("the embedded *redis.Client without a tenant: %v, want ErrNoTenant", err)
	}
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, "v", 0)
		p.Get(ctx, key)
		return nil
	})
	if !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("Pipelined without a tenant: %v", err)
	}
	for _, cmd := range cmds {
		if !errors.Is(cmd.Err(), tenant.ErrNoTenant) {
			t.Errorf("%v in the pipeline: %v", cmd.Args(), cmd.Err())
		}
	}
	if err := c.Watch(ctx, func(*redis.Tx) error { return nil }, key); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("Watch: %v", err)
	}
	ps := c.Subscribe(ctx, "ch")
	defer ps.Close()
	if _, err := ps.Receive(ctx); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("Subscribe: %v", err)
	}
	if n := raw.Exists(ctx, key).Val(); n != 0 {
		t.Errorf("the key was written")
	}
}

// checkListed checks that KEYS * and a SCAN iteration (2 keys a page) show
// tn exactly its keys want, without the prefix.
func checkListed(t *testing.T, ctx context.Context, c redis.Cmdable, tn tenant.Tenant, want []string) {
	t.Helper()
	keys := c.Keys(ctx, "*").Val()
	sort.Strings(keys)
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("%s: KEYS * (-want +got):\n%s", tn.Slug, diff)
	}
	var scanned []string
	iter := c.Scan(ctx, 0, "", 2).Iterator()
	for iter.Next(ctx) {
		scanned = append(scanned, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(scanned)
	if diff := cmp.Diff(want, slices.Compact(scanned)); diff != "" {
		t.Errorf("%s: SCAN (-want +got):\n%s", tn.Slug, diff)
	}
}

// watcher is what Client.Watch and ClusterClient.Watch share.
type watcher interface {
	Watch(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error
}

// incrWatched increments key in an optimistic transaction of w, calling
// interfere (if not nil) between the read and the EXEC.
func incrWatched(ctx context.Context, w watcher, key string, interfere func()) error {
	return w.Watch(ctx, func(tx *redis.Tx) error {
		n, err := tx.Get(ctx, key).Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if interfere != nil {
			interfere()
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, n+1, 0)
			return nil
		})
		return err
	}, key)
}
