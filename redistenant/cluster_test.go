package redistenant_test

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// movedCount sums the MOVED errors every cluster node has answered so far.
func movedCount(t *testing.T, raw rueidis.Client) int64 {
	t.Helper()
	var total int64
	for _, node := range raw.Nodes() {
		info, err := node.Do(context.Background(), node.B().Info().Section("errorstats").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "errorstat_MOVED:count="); ok {
				n, _ := strconv.ParseInt(rest, 10, 64)
				total += n
			}
		}
	}
	return total
}

func TestCluster(t *testing.T) {
	addrs := testenv.RedisCluster(t)
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	if raw.Mode() != rueidis.ClientModeCluster {
		t.Fatalf("client mode %v, want cluster", raw.Mode())
	}
	c := redistenant.New(raw, redistenant.Config{})
	var tenants []tenant.Tenant
	for range 6 { // several tenants, so their slots spread over the primaries
		tenants = append(tenants, testenv.Tenant(t, "cl"))
	}
	t.Cleanup(func() {
		for _, tn := range tenants {
			_, _ = c.Purge(context.Background(), tn)
		}
	})
	// Warm the topology so a MOVED could only come from a wrong slot.
	for _, tn := range tenants {
		if err := c.Do(ctxFor(tn), c.B().Get().Key("warm").Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
			t.Fatal(err)
		}
	}
	before := movedCount(t, raw)

	for _, tn := range tenants {
		ctx := ctxFor(tn)
		v := tn.Slug
		for _, cmd := range []rueidis.Completed{
			c.B().Set().Key("str").Value(v).Build(),
			c.B().Mset().KeyValue().KeyValue("a", v).KeyValue("b", v).KeyValue("c", v).Build(),
			c.B().Sadd().Key("s1").Member("x", v).Build(),
			c.B().Sadd().Key("s2").Member("y", v).Build(),
			c.B().Sunionstore().Destination("s3").Key("s1", "s2").Build(),
			c.B().Eval().Script("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SET', KEYS[2], ARGV[1])").Numkeys(2).Key("e1", "e2").Arg(v).Build(),
			c.B().Rename().Key("c").Newkey("renamed").Build(),
		} {
			if err := c.Do(ctx, cmd).Error(); err != nil {
				t.Fatalf("%s: %v", tn.Slug, err)
			}
		}
		res := c.DoMulti(ctx, c.B().Multi().Build(), c.B().Incr().Key("n").Build(), c.B().Incr().Key("n").Build(), c.B().Exec().Build())
		for _, r := range res {
			if err := r.Error(); err != nil {
				t.Fatalf("%s MULTI: %v", tn.Slug, err)
			}
		}
	}
	for _, tn := range tenants {
		ctx := ctxFor(tn)
		v := tn.Slug
		mg, err := c.Do(ctx, c.B().Mget().Key("a", "b", "renamed", "str", "e1", "e2").Build()).AsStrSlice()
		if err != nil || !slices.Equal(mg, []string{v, v, v, v, v, v}) {
			t.Errorf("%s MGET = %v, %v", tn.Slug, mg, err)
		}
		members, _ := c.Do(ctx, c.B().Smembers().Key("s3").Build()).AsStrSlice()
		sort.Strings(members)
		want := []string{v, "x", "y"}
		sort.Strings(want)
		if diff := cmp.Diff(want, members); diff != "" {
			t.Errorf("%s SUNIONSTORE (-want +got):\n%s", tn.Slug, diff)
		}
		if n, _ := c.Do(ctx, c.B().Get().Key("n").Build()).AsInt64(); n != 2 {
			t.Errorf("%s MULTI counter = %d", tn.Slug, n)
		}
		keys, err := c.Keys(ctx, "*")
		sort.Strings(keys)
		if err != nil || !slices.Equal(keys, []string{"a", "b", "e1", "e2", "n", "renamed", "s1", "s2", "s3", "str", "warm"}[:len(keys)]) || len(keys) < 10 {
			t.Errorf("%s keys = %v, %v", tn.Slug, keys, err)
		}
	}
	if after := movedCount(t, raw); after != before {
		t.Errorf("the cluster answered %d MOVED to confined commands: their slots were wrong", after-before)
	}
	// Purge on a cluster removes one tenant's keys and nothing else.
	n, err := c.Purge(context.Background(), tenants[0])
	if err != nil || n < 10 {
		t.Errorf("Purge = %d, %v", n, err)
	}
	for i, tn := range tenants {
		keys, _ := c.Keys(ctxFor(tn), "*")
		if i == 0 && len(keys) != 0 || i > 0 && len(keys) < 10 {
			t.Errorf("after purging tenant 0, tenant %d has %d keys", i, len(keys))
		}
	}
}

// TestClusterEveryHelper runs every exported helper on the cluster, with
// keys whose unprefixed names hash to different slots: none panics, and each
// answers as on a single server.
func TestClusterEveryHelper(t *testing.T) {
	addrs := testenv.RedisCluster(t)
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	c := redistenant.New(raw, redistenant.Config{})
	tn := testenv.Tenant(t, "clh")
	ctx := ctxFor(tn)
	t.Cleanup(func() { _, _ = c.Purge(context.Background(), tn) })
	keys := []string{"a", "b", "c", "foo", "bar"} // different slots unprefixed
	kvs := map[string]string{}
	for _, k := range keys {
		kvs[k] = "v-" + k
	}
	if err := c.MSet(ctx, kvs); err != nil {
		t.Fatalf("MSet: %v", err)
	}
	got, err := c.MGet(ctx, keys)
	if err != nil {
		t.Fatalf("MGet: %v", err)
	}
	for _, k := range keys {
		m := got[k]
		if v, _ := m.ToString(); v != "v-"+k {
			t.Errorf("MGet %s = %q", k, v)
		}
	}
	found, err := c.Keys(ctx, "*")
	if err != nil || len(found) != len(keys) {
		t.Errorf("Keys = %v, %v", found, err)
	}
	entry, err := c.Scan(ctx, 0, "*", 100)
	if err != nil || len(entry.Elements) != len(keys) {
		t.Errorf("Scan = %v, %v", entry.Elements, err)
	}
	if n, err := c.MDel(ctx, keys[:2]); err != nil || n != 2 {
		t.Errorf("MDel = %d, %v", n, err)
	}
	if k, err := c.Key(ctx, "a"); err != nil || k != redistenant.Prefix(tn)+"a" {
		t.Errorf("Key = %q, %v", k, err)
	}
	if k, ok := c.Strip(ctx, redistenant.Prefix(tn)+"a"); !ok || k != "a" {
		t.Errorf("Strip = %q, %v", k, ok)
	}
	for _, cmd := range []rueidis.Completed{
		c.B().Rpush().Key("l1").Element("x", "y").Build(),
		c.B().Zadd().Key("z1").ScoreMember().ScoreMember(1, "m").ScoreMember(2, "n").Build(),
		c.B().Xadd().Key("s1").Id("1-1").FieldValue().FieldValue("f", "v").Build(),
	} {
		if err := c.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if k, e, err := c.DoPop(ctx, c.B().Blpop().Key("nothing", "l1").Timeout(1).Build()); err != nil || k != "l1" || e != "x" {
		t.Errorf("DoPop = %q %q %v", k, e, err)
	}
	if k, m, err := c.DoZPop(ctx, c.B().Bzpopmin().Key("nothing", "z1").Timeout(1).Build()); err != nil || k != "z1" || m.Member != "m" {
		t.Errorf("DoZPop = %q %v %v", k, m, err)
	}
	if kv, err := c.DoLMPop(ctx, c.B().Lmpop().Numkeys(2).Key("nothing", "l1").Left().Build()); err != nil || kv.Key != "l1" {
		t.Errorf("DoLMPop = %v %v", kv, err)
	}
	if kz, err := c.DoZMPop(ctx, c.B().Zmpop().Numkeys(2).Key("nothing", "z1").Min().Build()); err != nil || kz.Key != "z1" {
		t.Errorf("DoZMPop = %v %v", kz, err)
	}
	if streams, err := c.DoXRead(ctx, c.B().Xread().Streams().Key("s1", "s2").Id("0", "0").Build()); err != nil || len(streams["s1"]) != 1 {
		t.Errorf("DoXRead = %v %v", streams, err)
	}
	res := c.DoMulti(ctx, c.B().Multi().Build(), c.B().Set().Key("a").Value("1").Build(), c.B().Incr().Key("foo").Build(), c.B().Exec().Build())
	if _, err := res[3].ToArray(); err != nil {
		t.Errorf("MULTI block on the cluster: %v", err)
	}
	err = c.Dedicated(func(d rueidis.DedicatedClient) error {
		res := d.DoMulti(ctx, d.B().Watch().Key("a", "foo").Build(), d.B().Multi().Build(),
			d.B().Mset().KeyValue().KeyValue("a", "2").KeyValue("foo", "3").Build(), d.B().Exec().Build())
		return res[3].Error()
	})
	if err != nil {
		t.Errorf("optimistic MSET on a dedicated cluster connection: %v", err)
	}
	if n, err := c.Purge(ctx, tn); err != nil || n == 0 {
		t.Errorf("Purge = %d, %v", n, err)
	}
}
