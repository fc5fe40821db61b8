package redistenant_test

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func setup(t *testing.T) (*redistenant.Client, rueidis.Client, tenant.Tenant, tenant.Tenant) {
	t.Helper()
	raw := testenv.RedisClient(t)
	c := redistenant.New(raw, redistenant.Config{})
	a, b := testenv.Tenant(t, "ra"), testenv.Tenant(t, "rb")
	t.Cleanup(func() {
		for _, tn := range []tenant.Tenant{a, b} {
			_, _ = c.Purge(context.Background(), tn)
		}
	})
	return c, raw, a, b
}

func ctxFor(t tenant.Tenant) context.Context { return tenant.NewContext(context.Background(), t) }

// rawKeys lists, uncon, every key of tenant t as the server stores it.
func rawKeys(t *testing.T, raw rueidis.Client, tn tenant.Tenant) []string {
	t.Helper()
	keys, err := raw.Do(context.Background(), raw.B().Keys().Pattern(redistenant.Prefix(tn)+"*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

func TestSameLogicalKeysAcrossDataTypes(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	write := func(tn tenant.Tenant) {
		ctx := ctxFor(tn)
		v := tn.Slug
		for _, cmd := range []rueidis.Completed{
			c.B().Set().Key("str").Value(v).Build(),
			c.B().Hset().Key("hash").FieldValue().FieldValue("f", v).Build(),
			c.B().Rpush().Key("list").Element(v).Build(),
			c.B().Sadd().Key("set").Member(v).Build(),
			c.B().Zadd().Key("zset").ScoreMember().ScoreMember(1, v).Build(),
			c.B().Xadd().Key("stream").Id("*").FieldValue().FieldValue("f", v).Build(),
			c.B().Mset().KeyValue().KeyValue("m1", v).KeyValue("m2", v).Build(),
			c.B().Eval().Script("return redis.call('SET', KEYS[1], ARGV[1])").Numkeys(1).Key("lua").Arg(v).Build(),
		} {
			if err := c.Do(ctx, cmd).Error(); err != nil {
				t.Fatalf("%s: %v", tn.Slug, err)
			}
		}
	}
	write(a)
	write(b)
	for _, tn := range []tenant.Tenant{a, b} {
		ctx := ctxFor(tn)
		v := tn.Slug
		got := map[string]string{}
		s, _ := c.Do(ctx, c.B().Get().Key("str").Build()).ToString()
		got["str"] = s
		s, _ = c.Do(ctx, c.B().Hget().Key("hash").Field("f").Build()).ToString()
		got["hash"] = s
		l, _ := c.Do(ctx, c.B().Lrange().Key("list").Start(0).Stop(-1).Build()).AsStrSlice()
		got["list"] = strings.Join(l, ",")
		m, _ := c.Do(ctx, c.B().Smembers().Key("set").Build()).AsStrSlice()
		got["set"] = strings.Join(m, ",")
		z, _ := c.Do(ctx, c.B().Zrange().Key("zset").Min("0").Max("-1").Build()).AsStrSlice()
		got["zset"] = strings.Join(z, ",")
		xs, _ := c.Do(ctx, c.B().Xrange().Key("stream").Start("-").End("+").Build()).AsXRange()
		if len(xs) == 1 {
			got["stream"] = xs[0].FieldValues["f"]
		}
		mg, _ := c.Do(ctx, c.B().Mget().Key("m1", "m2").Build()).AsStrSlice()
		got["mget"] = strings.Join(mg, ",")
		s, _ = c.Do(ctx, c.B().Get().Key("lua").Build()).ToString()
		got["lua"] = s
		want := map[string]string{"str": v, "hash": v, "list": v, "set": v, "zset": v, "stream": v, "mget": v + "," + v, "lua": v}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s reads (-want +got):\n%s", tn.Slug, diff)
		}
		p := redistenant.Prefix(tn)
		wantKeys := []string{p + "hash", p + "list", p + "lua", p + "m1", p + "m2", p + "set", p + "str", p + "stream", p + "zset"}
		if diff := cmp.Diff(wantKeys, rawKeys(t, raw, tn)); diff != "" {
			t.Errorf("%s keys on the server (-want +got):\n%s", tn.Slug, diff)
		}
	}
}

func TestNoTenantAndRefusedCommands(t *testing.T) {
	t.Parallel()
	c, _, a, _ := setup(t)
	if err := c.Do(context.Background(), c.B().Get().Key("k").Build()).Error(); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("no tenant: %v", err)
	}
	ctx := ctxFor(a)
	refused := map[string]rueidis.Completed{
		"FLUSHALL":       c.B().Flushall().Build(),
		"FLUSHDB":        c.B().Flushdb().Build(),
		"SWAPDB":         c.B().Swapdb().Index1(0).Index2(1).Build(),
		"SELECT":         c.B().Select().Index(1).Build(),
		"RANDOMKEY":      c.B().Randomkey().Build(),
		"CONFIG GET":     c.B().ConfigGet().Parameter("*").Build(),
		"DEBUG":          c.B().Arbitrary("DEBUG", "SLEEP", "0").Build(),
		"SCRIPT FLUSH":   c.B().ScriptFlush().Build(),
		"FUNCTION FLUSH": c.B().FunctionFlush().Build(),
		"DBSIZE":         c.B().Dbsize().Build(),
		"CLIENT KILL":    c.B().ClientKill().IpPort("1.2.3.4:5").Build(),
		"CLIENT LIST":    c.B().ClientList().Build(),
		"MOVE":           c.B().Move().Key("k").Db(1).Build(),
		"COPY DB":        c.B().Copy().Source("a").Destination("b").Db(1).Build(),
		"EVAL no keys":   c.B().Eval().Script("return redis.call('FLUSHALL')").Numkeys(0).Build(),
		"TRACKING all":   c.B().ClientTracking().On().Bcast().Build(),
		"PUBSUB NUMPAT":  c.B().PubsubNumpat().Build(),
		"INFO":           c.B().Info().Build(),
	}
	for name, cmd := range refused {
		err := c.Do(ctx, cmd).Error()
		if !errors.Is(err, redistenant.ErrCommandNotAllowed) {
			t.Errorf("%s: %v, want ErrCommandNotAllowed", name, err)
		}
	}
	if err := c.Do(ctx, c.B().Arbitrary("NOSUCHCMD", "x").Build()).Error(); !errors.Is(err, redistenant.ErrUnsupportedCommand) {
		t.Errorf("unknown command: %v, want ErrUnsupportedCommand", err)
	}
	var ce *redistenant.CommandError
	if err := c.Do(ctx, c.B().Flushall().Build()).Error(); !errors.As(err, &ce) || ce.Command != "FLUSHALL" || !strings.Contains(ce.Reason, "Purge") {
		t.Errorf("CommandError = %+v", ce)
	}
	// A refused command in a pipeline stops the whole pipeline.
	res := c.DoMulti(ctx, c.B().Set().Key("x").Value("1").Build(), c.B().Flushall().Build())
	for i, r := range res {
		if !errors.Is(r.Error(), redistenant.ErrCommandNotAllowed) {
			t.Errorf("DoMulti result %d: %v", i, r.Error())
		}
	}
	if n, _ := c.Do(ctx, c.B().Exists().Key("x").Build()).AsInt64(); n != 0 {
		t.Error("part of a refused pipeline was sent")
	}
}

func TestMultiExecAndCache(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	for _, tn := range []tenant.Tenant{a, b} {
		ctx := ctxFor(tn)
		res := c.DoMulti(ctx,
			c.B().Multi().Build(),
			c.B().Set().Key("counter").Value("10").Build(),
			c.B().Incrby().Key("counter").Increment(int64(len(tn.Slug))).Build(),
			c.B().Exec().Build())
		for _, r := range res {
			if err := r.Error(); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 { // second read comes from the client-side cache
			n, err := c.DoCache(ctx, c.B().Get().Key("counter").Cache(), time.Minute).AsInt64()
			if err != nil || n != int64(10+len(tn.Slug)) {
				t.Errorf("%s cached read: %d, %v", tn.Slug, n, err)
			}
		}
	}
	if got := rawKeys(t, raw, a); !slices.Equal(got, []string{redistenant.Prefix(a) + "counter"}) {
		t.Errorf("keys of A: %v", got)
	}
	res := c.DoMultiCache(ctxFor(b), rueidis.CT(c.B().Get().Key("counter").Cache(), time.Minute))
	if n, err := res[0].AsInt64(); err != nil || n != int64(10+len(b.Slug)) {
		t.Errorf("DoMultiCache: %d, %v", n, err)
	}
}

func TestPubSubConfined(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	type got struct {
		mu   sync.Mutex
		msgs []rueidis.PubSubMessage
	}
	listen := func(tn tenant.Tenant, cmd rueidis.Completed) (*got, context.CancelFunc) {
		g := &got{}
		ctx, cancel := context.WithCancel(ctxFor(tn))
		ready := make(chan struct{})
		go func() {
			_ = c.Dedicated(func(dc rueidis.DedicatedClient) error {
				wait := dc.SetPubSubHooks(rueidis.PubSubHooks{
					OnSubscription: func(rueidis.PubSubSubscription) { close(ready) },
					OnMessage: func(m rueidis.PubSubMessage) {
						g.mu.Lock()
						g.msgs = append(g.msgs, m)
						g.mu.Unlock()
					},
				})
				if err := dc.Do(ctx, cmd).Error(); err != nil {
					t.Error(err)
				}
				select {
				case <-wait:
				case <-ctx.Done():
				}
				return nil
			})
		}()
		<-ready
		return g, cancel
	}
	ga, stopA := listen(a, c.B().Subscribe().Channel("news").Build())
	defer stopA()
	gb, stopB := listen(b, c.B().Psubscribe().Pattern("ne*").Build())
	defer stopB()

	for _, tn := range []tenant.Tenant{a, b} {
		if err := c.Do(ctxFor(tn), c.B().Publish().Channel("news").Message("from "+tn.Slug).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// A raw publish on the unprefixed channel reaches no tenant.
	_ = raw.Do(context.Background(), raw.B().Publish().Channel("news").Message("outside").Build())
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		ga.mu.Lock()
		gb.mu.Lock()
		n := len(ga.msgs) + len(gb.msgs)
		gb.mu.Unlock()
		ga.mu.Unlock()
		if n >= 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	ga.mu.Lock()
	defer ga.mu.Unlock()
	gb.mu.Lock()
	defer gb.mu.Unlock()
	if diff := cmp.Diff([]rueidis.PubSubMessage{{Channel: "news", Message: "from " + a.Slug}}, ga.msgs); diff != "" {
		t.Errorf("tenant A's subscriber (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]rueidis.PubSubMessage{{Pattern: "ne*", Channel: "news", Message: "from " + b.Slug}}, gb.msgs); diff != "" {
		t.Errorf("tenant B's pattern subscriber (-want +got):\n%s", diff)
	}
}

func TestScanKeysAndHelpers(t *testing.T) {
	t.Parallel()
	c, _, a, b := setup(t)
	for _, tn := range []tenant.Tenant{a, b} {
		if err := c.MSet(ctxFor(tn), map[string]string{"user:1": tn.Slug, "user:2": tn.Slug, "other": tn.Slug}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := ctxFor(a)
	keys, err := c.Keys(ctx, "user:*")
	sort.Strings(keys)
	if err != nil || !slices.Equal(keys, []string{"user:1", "user:2"}) {
		t.Errorf("Keys = %v, %v", keys, err)
	}
	var scanned []string
	var cursor uint64
	for {
		e, err := c.Scan(ctx, cursor, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		scanned = append(scanned, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	sort.Strings(scanned)
	if !slices.Equal(scanned, []string{"other", "user:1", "user:2"}) {
		t.Errorf("Scan = %v", scanned)
	}
	// Raw SCAN and KEYS through the client are confined too (prefixed results).
	all, err := c.Do(ctx, c.B().Keys().Pattern("*").Build()).AsStrSlice()
	if err != nil || len(all) != 3 {
		t.Errorf("KEYS * = %v, %v", all, err)
	}
	e, err := c.Do(ctx, c.B().Scan().Cursor(0).Count(1<<20).Build()).AsScanEntry()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range e.Elements {
		if !strings.HasPrefix(k, redistenant.Prefix(a)) {
			t.Errorf("SCAN without MATCH returned %q outside the tenant", k)
		}
	}
	vals, err := c.MGet(ctx, []string{"user:1", "nope"})
	if err != nil {
		t.Fatal(err)
	}
	v1, nope := vals["user:1"], vals["nope"]
	if s, _ := v1.ToString(); s != a.Slug || !nope.IsNil() {
		t.Errorf("MGet = %v", vals)
	}
	if n, err := c.MDel(ctx, []string{"user:1", "user:2"}); err != nil || n != 2 {
		t.Errorf("MDel = %d, %v", n, err)
	}
	if keys, _ := c.Keys(ctxFor(b), "*"); len(keys) != 3 {
		t.Errorf("tenant B lost keys: %v", keys)
	}
	if k, err := c.Key(ctx, "x"); err != nil || k != redistenant.Prefix(a)+"x" {
		t.Errorf("Key = %q, %v", k, err)
	}
	if k, ok := c.Strip(ctx, redistenant.Prefix(a)+"x"); !ok || k != "x" {
		t.Errorf("Strip = %q, %v", k, ok)
	}
}

func TestPurgeLeavesOtherTenants(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	for _, tn := range []tenant.Tenant{a, b} {
		kvs := map[string]string{}
		for i := range 1200 {
			kvs["k"+strings.Repeat("x", i%3)+string(rune('a'+i%26))+tn.Slug[:2]+itoa(i)] = "v"
		}
		if err := c.MSet(ctxFor(tn), kvs); err != nil {
			t.Fatal(err)
		}
	}
	// A key outside any tenant, and one that only looks like A's prefix.
	lookalike := "t:{" + a.ID + "x}:k"
	for _, k := range []string{"global:" + a.ID, lookalike} {
		if err := raw.Do(context.Background(), raw.B().Set().Key(k).Value("1").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Do(context.Background(), raw.B().Del().Key(k).Build()) })
	}
	n, err := c.Purge(context.Background(), a)
	if err != nil || n != 1200 {
		t.Fatalf("Purge = %d, %v; want 1200", n, err)
	}
	if keys := rawKeys(t, raw, a); len(keys) != 0 {
		t.Errorf("A keeps %d keys", len(keys))
	}
	if keys := rawKeys(t, raw, b); len(keys) != 1200 {
		t.Errorf("B has %d keys, want 1200", len(keys))
	}
	for _, k := range []string{"global:" + a.ID, lookalike} {
		if n, _ := raw.Do(context.Background(), raw.B().Exists().Key(k).Build()).AsInt64(); n != 1 {
			t.Errorf("Purge removed %q", k)
		}
	}
	if n, err := c.Purge(context.Background(), a); err != nil || n != 0 {
		t.Errorf("second Purge = %d, %v", n, err)
	}
}

func TestPinnedCommandIsNeverPrefixedTwice(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	set := c.B().Set().Key("pinned").Value("v").Build().Pin()
	get := c.B().Get().Key("pinned").Build().Pin()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			tn := []tenant.Tenant{a, b}[i%2]
			if err := c.Do(ctxFor(tn), set).Error(); err != nil {
				t.Error(err)
			}
			if v, err := c.Do(ctxFor(tn), get).ToString(); err != nil || v != "v" {
				t.Errorf("%s: %q, %v", tn.Slug, v, err)
			}
		})
	}
	wg.Wait()
	if got := set.Commands(); !slices.Equal(got, []string{"SET", "pinned", "v"}) {
		t.Errorf("the pinned command changed: %v", got)
	}
	for _, tn := range []tenant.Tenant{a, b} {
		if got := rawKeys(t, raw, tn); !slices.Equal(got, []string{redistenant.Prefix(tn) + "pinned"}) {
			t.Errorf("%s keys: %v", tn.Slug, got)
		}
	}
}

func TestSortPatternsConfined(t *testing.T) {
	t.Parallel()
	c, raw, a, _ := setup(t)
	ctx := ctxFor(a)
	for _, cmd := range []rueidis.Completed{
		c.B().Rpush().Key("ids").Element("1", "2").Build(),
		c.B().Mset().KeyValue().KeyValue("w_1", "20").KeyValue("w_2", "10").KeyValue("n_1", "one").KeyValue("n_2", "two").Build(),
	} {
		if err := c.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Do(ctx, c.B().Sort().Key("ids").By("w_*").Get().Get("n_*").Get("#").Build()).AsStrSlice()
	if err != nil || !slices.Equal(got, []string{"two", "2", "one", "1"}) {
		t.Errorf("SORT BY/GET = %v, %v", got, err)
	}
	if err := c.Do(ctx, c.B().Sort().Key("ids").Store("sorted").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if n, _ := raw.Do(context.Background(), raw.B().Exists().Key(redistenant.Prefix(a)+"sorted").Build()).AsInt64(); n != 1 {
		t.Error("SORT STORE wrote outside the tenant")
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}
