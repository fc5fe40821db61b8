package isolationtest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func tctx(t tenant.Tenant) context.Context { return tenant.NewContext(context.Background(), t) }

// TestRedisPrefixCollisions tries IDs built so that one tenant's prefix is a
// prefix of another's, and IDs that would merge a key into another tenant's
// namespace: validation refuses the latter, and the hash-tag braces keep the
// former apart.
func TestRedisPrefixCollisions(t *testing.T) {
	raw := testenv.RedisClient(t)
	c := redistenant.New(raw, redistenant.Config{})
	base := testenv.UniqueID("acme")
	short, long := tenant.Tenant{ID: base, Slug: "short"}, tenant.Tenant{ID: base + "-corp", Slug: "long"}
	for _, tn := range []tenant.Tenant{short, long} {
		t.Cleanup(func() { _, _ = c.Purge(context.Background(), tn) })
		if err := c.Do(tctx(tn), c.B().Set().Key("secret").Value(tn.Slug).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// "acme" + "b:c" against "acme:b" + "c": the ':' can never be in an ID.
	if err := c.Do(tctx(tenant.Tenant{ID: base + ":b", Slug: "evil"}), c.B().Get().Key("c").Build()).Error(); !errors.Is(err, tenant.ErrInvalidID) {
		t.Errorf("ID with ':': %v", err)
	}
	for _, tn := range []tenant.Tenant{short, long} {
		keys, err := c.Keys(tctx(tn), "*")
		if err != nil || !slices.Equal(keys, []string{"secret"}) {
			t.Errorf("%s sees keys %v (%v)", tn.Slug, keys, err)
		}
		v, err := c.Do(tctx(tn), c.B().Get().Key("secret").Build()).ToString()
		if err != nil || v != tn.Slug {
			t.Errorf("%s reads %q (%v)", tn.Slug, v, err)
		}
	}
	// Purging the short ID leaves the long one, whose prefix it starts.
	if n, err := c.Purge(context.Background(), short); err != nil || n != 1 {
		t.Errorf("Purge(short) = %d, %v", n, err)
	}
	if v, _ := c.Do(tctx(long), c.B().Get().Key("secret").Build()).ToString(); v != "long" {
		t.Errorf("the long ID's key went with the short one's")
	}
}

// TestRedisGlobsStayInside sends glob patterns through KEYS, SCAN MATCH,
// PSUBSCRIBE and PUBSUB CHANNELS: each is anchored to the tenant's prefix.
func TestRedisGlobsStayInside(t *testing.T) {
	raw := testenv.RedisClient(t)
	c := redistenant.New(raw, redistenant.Config{})
	a, b := testenv.Tenant(t, "ga"), testenv.Tenant(t, "gb")
	for _, tn := range []tenant.Tenant{a, b} {
		t.Cleanup(func() { _, _ = c.Purge(context.Background(), tn) })
		if err := c.MSet(tctx(tn), map[string]string{"k1": "v", "k2": "v"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pattern := range []string{"*", "?*", "[a-z]*", "*}*", `\*`, "t:{*"} {
		got, err := c.Do(tctx(a), c.B().Keys().Pattern(pattern).Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range got {
			if !strings.HasPrefix(k, redistenant.Prefix(a)) {
				t.Errorf("KEYS %q returned %q outside tenant A", pattern, k)
			}
		}
		e, err := c.Do(tctx(a), c.B().Scan().Cursor(0).Match(pattern).Count(10000).Build()).AsScanEntry()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range e.Elements {
			if !strings.HasPrefix(k, redistenant.Prefix(a)) {
				t.Errorf("SCAN MATCH %q returned %q outside tenant A", pattern, k)
			}
		}
	}
	got, err := c.Do(tctx(a), c.B().PubsubChannels().Pattern("*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range got {
		if !strings.HasPrefix(ch, redistenant.Prefix(a)) {
			t.Errorf("PUBSUB CHANNELS * showed %q", ch)
		}
	}
}

// TestRedisScriptsAndKeyspaceCommands: a script that declares no keys is
// refused (nothing would confine it), as are the commands that reach the
// whole keyspace or server.
func TestRedisScriptsAndKeyspaceCommands(t *testing.T) {
	raw := testenv.RedisClient(t)
	c := redistenant.New(raw, redistenant.Config{})
	a := testenv.Tenant(t, "lua")
	ctx := tctx(a)
	for name, cmd := range map[string]rueidis.Completed{
		"EVAL numkeys 0":  c.B().Eval().Script("return redis.call('KEYS', '*')").Numkeys(0).Build(),
		"FCALL numkeys 0": c.B().Fcall().Function("f").Numkeys(0).Build(),
		"FLUSHDB":         c.B().Flushdb().Build(),
		"FLUSHALL":        c.B().Flushall().Build(),
		"SWAPDB":          c.B().Swapdb().Index1(0).Index2(1).Build(),
		"SELECT":          c.B().Select().Index(2).Build(),
		"RANDOMKEY":       c.B().Randomkey().Build(),
		"SCRIPT FLUSH":    c.B().ScriptFlush().Build(),
		"FUNCTION LOAD":   c.B().FunctionLoad().FunctionCode("#!lua name=x\nredis.register_function('f', function() return 1 end)").Build(),
		"MONITOR":         c.B().Arbitrary("MONITOR").Build(),
		"CONFIG SET":      c.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "1").Build(),
		"MIGRATE":         c.B().Migrate().Host("127.0.0.1").Port(1).Key("k").DestinationDb(0).Timeout(1).Build(),
	} {
		if err := c.Do(ctx, cmd).Error(); !errors.Is(err, redistenant.ErrCommandNotAllowed) {
			t.Errorf("%s: %v, want ErrCommandNotAllowed", name, err)
		}
	}
	// Declared keys are confined; what a script names on its own is not
	// (a documented limitation: review scripts, declare every key). On a
	// cluster, Redis refuses an undeclared key in another slot; see below.
	res, err := c.Do(ctx, c.B().Eval().Script("return KEYS[1]").Numkeys(1).Key("mine").Build()).ToString()
	if err != nil || res != redistenant.Prefix(a)+"mine" {
		t.Errorf("declared key: %q, %v", res, err)
	}
}

// TestRedisClusterRefusesUndeclaredKeys shows the denial path for a script
// that names another tenant's key: on a cluster the key lives in another
// slot, and Redis refuses a script declared with "#!lua".
func TestRedisClusterRefusesUndeclaredKeys(t *testing.T) {
	addrs := testenv.RedisCluster(t)
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	c := redistenant.New(rc, redistenant.Config{})
	var a, b tenant.Tenant
	for { // two tenants whose hash tags fall in different slots (nearly always the first try)
		a, b = testenv.Tenant(t, "sa"), testenv.Tenant(t, "sb")
		if slot(rc, redistenant.Prefix(a)) != slot(rc, redistenant.Prefix(b)) {
			break
		}
	}
	t.Cleanup(func() { _, _ = c.Purge(context.Background(), b) })
	if err := c.Do(tctx(b), c.B().Set().Key("secret").Value("b's").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// A script with a shebang line gets Redis 7's per-script rules: without
	// the allow-cross-slot-keys flag it may touch only its declared slot,
	// even where the other slot lives on the same node. (A plain script
	// without one is refused only when the other slot is on another node.)
	script := "#!lua\nreturn redis.call('GET', ARGV[1])"
	err = c.Do(tctx(a), c.B().Eval().Script(script).Numkeys(1).Key("mine").Arg(redistenant.Prefix(b)+"secret").Build()).Error()
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "slot") && !strings.Contains(strings.ToLower(err.Error()), "non local") {
		t.Errorf("script reading another tenant's key on a cluster: %v, want a cross-slot refusal", err)
	}
}

// slot computes a key's cluster slot with the cluster client's builder.
func slot(rc rueidis.Client, key string) uint16 {
	cmd := rc.B().Get().Key(key).Build()
	return cmd.Slot()
}
