package goredistenant_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/contrib/goredistenant"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func TestRefusedCommandsSendNothing(t *testing.T) {
	t.Parallel()
	c, raw, a, _ := setup(t, func(o *redis.Options) { o.PoolSize = 1 })
	ctx := ctxFor(a)
	conn := c.Conn()
	defer conn.Close()
	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"FLUSHALL", func() error { return c.FlushAll(ctx).Err() }, redistenant.ErrCommandNotAllowed},
		{"FLUSHDB", func() error { return c.FlushDB(ctx).Err() }, redistenant.ErrCommandNotAllowed},
		{"DBSIZE", func() error { return c.DBSize(ctx).Err() }, redistenant.ErrCommandNotAllowed},
		{"RANDOMKEY", func() error { return c.RandomKey(ctx).Err() }, redistenant.ErrCommandNotAllowed},
		{"CONFIG GET", func() error { return c.ConfigGet(ctx, "*").Err() }, redistenant.ErrCommandNotAllowed},
		{"CLIENT LIST", func() error { return c.ClientList(ctx).Err() }, redistenant.ErrConnectionState},
		{"CLIENT KILL", func() error { return c.ClientKillByFilter(ctx, "TYPE", "normal").Err() }, redistenant.ErrConnectionState},
		{"INFO", func() error { return c.Info(ctx).Err() }, redistenant.ErrCommandNotAllowed},
		{"SWAPDB", func() error { return c.Do(ctx, "swapdb", 0, 1).Err() }, redistenant.ErrConnectionState},
		{"EVAL without keys", func() error { return c.Eval(ctx, "return redis.call('get', 'x')", nil).Err() }, redistenant.ErrCommandNotAllowed},
		{"SCRIPT FLUSH", func() error { return c.ScriptFlush(ctx).Err() }, redistenant.ErrCommandNotAllowed},
		{"COPY ... DB", func() error { return c.Copy(ctx, "a", "b", 1, false).Err() }, redistenant.ErrCommandNotAllowed},
		{"MONITOR", func() error { return c.Do(ctx, "monitor").Err() }, redistenant.ErrConnectionState},
		{"unknown", func() error { return c.Do(ctx, "nosuchcommand", "k").Err() }, redistenant.ErrUnsupportedCommand},
		{"SELECT on a Conn", func() error { return conn.Select(ctx, 1).Err() }, redistenant.ErrConnectionState},
		{"CLIENT SETNAME on a Conn", func() error { return conn.ClientSetName(ctx, "x").Err() }, redistenant.ErrConnectionState},
		{"HELLO with another protocol", func() error { return conn.Hello(ctx, 2, "", "", "").Err() }, redistenant.ErrConnectionState},
		{"AUTH", func() error { return conn.Auth(ctx, "secret").Err() }, redistenant.ErrConnectionState},
		{"CLIENT REPLY", func() error { return c.Do(ctx, "client", "reply", "off").Err() }, redistenant.ErrConnectionState},
		{"MULTI alone", func() error { return c.Do(ctx, "multi").Err() }, redistenant.ErrConnectionState},
		{"EXEC alone", func() error { return c.Do(ctx, "exec").Err() }, redistenant.ErrConnectionState},
		{"WATCH", func() error { return c.Do(ctx, "watch", "k").Err() }, redistenant.ErrConnectionState},
		{"SUBSCRIBE through Do", func() error { return c.Do(ctx, "subscribe", "ch").Err() }, redistenant.ErrConnectionState},
		{"go-redis's own Watch", func() error {
			return c.Client.Watch(ctx, func(*redis.Tx) error { return nil }, "k")
		}, redistenant.ErrConnectionState},
	} {
		err := tc.do()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			continue
		}
		var ce *redistenant.CommandError
		if !errors.As(err, &ce) || ce.Reason == "" {
			t.Errorf("%s: %v is not a CommandError with a reason", tc.name, err)
		}
	}
	// The one connection is as it was: database 0, no name, no MULTI.
	if err := c.Set(ctx, "after", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := raw.Get(context.Background(), redistenant.Prefix(a)+"after").Val(); got != "v" {
		t.Errorf("after the refusals a SET reached database 0 as %q", got)
	}
	if name := raw.Do(context.Background(), "client", "list").String(); strings.Contains(name, "name=x ") {
		t.Errorf("a connection was named: %s", name)
	}
}

func TestWatchErrorNamesTheAlternative(t *testing.T) {
	t.Parallel()
	c, _, a, _ := setup(t)
	err := c.Client.Watch(ctxFor(a), func(*redis.Tx) error { return nil }, "k")
	if err == nil || !strings.Contains(err.Error(), "Client.Watch of goredistenant") {
		t.Errorf("go-redis's Watch: %v, want a message naming Client.Watch", err)
	}
}

// TestOneConnectionTwoTenants runs two tenants' transactions, pipelines and
// failures over a pool of one connection: nothing one leaves on it (MULTI,
// WATCH) reaches the other.
func TestOneConnectionTwoTenants(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t, func(o *redis.Options) { o.PoolSize = 1 })
	ca, cb := ctxFor(a), ctxFor(b)
	bg := context.Background()

	// A pipeline with MULTI and no EXEC is refused whole: nothing is sent.
	_, err := c.Pipelined(ca, func(p redis.Pipeliner) error {
		p.Do(ca, "multi")
		p.Set(ca, "half", "1", 0)
		return nil
	})
	if !errors.Is(err, redistenant.ErrConnectionState) {
		t.Errorf("MULTI without EXEC: %v", err)
	}
	if raw.Exists(bg, redistenant.Prefix(a)+"half").Val() != 0 {
		t.Error("the refused pipeline wrote")
	}
	// b's plain commands run as commands, not queued in a's MULTI.
	if got := c.Set(cb, "k", "b", 0).Val(); got != "OK" {
		t.Errorf("b's SET after a's refused MULTI: %q", got)
	}

	// a watches a key and fails inside fn: the connection goes back
	// unwatched, so b's transaction commits although a's key changes.
	boom := errors.New("boom")
	err = c.Watch(ca, func(tx *redis.Tx) error {
		return boom
	}, "w")
	if !errors.Is(err, boom) {
		t.Fatalf("Watch: %v", err)
	}
	_, err = c.TxPipelined(cb, func(p redis.Pipeliner) error {
		raw.Set(bg, redistenant.Prefix(a)+"w", "changed", 0) // a's watched key, on another connection
		p.Incr(cb, "n")
		return nil
	})
	if err != nil {
		t.Errorf("b's transaction after a's Watch: %v (a's WATCH was left on the connection)", err)
	}

	// A whole MULTI ... EXEC in one pipeline is allowed and confined.
	cmds, err := c.Pipelined(ca, func(p redis.Pipeliner) error {
		p.Do(ca, "multi")
		p.Set(ca, "inblock", "1", 0)
		p.Do(ca, "exec")
		return nil
	})
	if err != nil {
		t.Fatalf("MULTI ... EXEC block: %v %v", err, cmds)
	}
	if raw.Get(bg, redistenant.Prefix(a)+"inblock").Val() != "1" {
		t.Error("the block's SET did not reach a's namespace")
	}
	if got := rawKeys(t, raw, b); !cmp.Equal(got, prefixed(b, "k", "n")) {
		t.Errorf("b's keys: %v", got)
	}
}

func TestWatchIsOptimistic(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	ca := ctxFor(a)
	interfere := func() { raw.Set(context.Background(), redistenant.Prefix(a)+"counter", "100", 0) }
	if err := incrWatched(ca, c, "counter", nil); err != nil {
		t.Fatal(err)
	}
	if err := incrWatched(ca, c, "counter", interfere); !errors.Is(err, redis.TxFailedErr) {
		t.Errorf("a watched key changed: %v, want TxFailedErr", err)
	}
	if got := raw.Get(context.Background(), redistenant.Prefix(a)+"counter").Val(); got != "100" {
		t.Errorf("counter = %q, want the interfering write's 100", got)
	}
	// Tx.Watch inside fn is refused: keys are watched through Client.Watch.
	err := c.Watch(ca, func(tx *redis.Tx) error { return tx.Watch(ca, "other").Err() })
	if !errors.Is(err, redistenant.ErrConnectionState) {
		t.Errorf("Tx.Watch inside fn: %v", err)
	}
	// b cannot watch with a's context's keys: every key is b's own.
	err = c.Watch(ctxFor(b), func(tx *redis.Tx) error {
		if v := tx.Get(ctxFor(b), "counter").Val(); v != "" {
			t.Errorf("b reads a's counter: %q", v)
		}
		return nil
	}, "counter")
	if err != nil {
		t.Fatal(err)
	}
}

func TestPubSubIsPerTenant(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	ca, cb := ctxFor(a), ctxFor(b)
	subA := c.Subscribe(ca, "orders")
	defer subA.Close()
	subB := c.PSubscribe(cb, "ord*")
	defer subB.Close()
	for _, s := range []*goredistenant.PubSub{subA, subB} {
		m, err := s.Receive(ca)
		if s == subB {
			m, err = s.Receive(cb)
		}
		if err != nil {
			t.Fatal(err)
		}
		sub, ok := m.(*redis.Subscription)
		if !ok || (sub.Channel != "orders" && sub.Channel != "ord*") {
			t.Errorf("subscription reply %#v, want the name without the prefix", m)
		}
	}
	if n := c.Publish(ca, "orders", "for a").Val(); n != 1 {
		t.Errorf("a's publish reached %d subscribers, want 1", n)
	}
	if n := c.Publish(cb, "orders", "for b").Val(); n != 1 {
		t.Errorf("b's publish reached %d subscribers, want 1", n)
	}
	ma, err := subA.ReceiveMessage(ca)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := subB.ReceiveMessage(cb)
	if err != nil {
		t.Fatal(err)
	}
	got := []redis.Message{*ma, *mb}
	want := []redis.Message{{Channel: "orders", Payload: "for a"}, {Channel: "orders", Pattern: "ord*", Payload: "for b"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if n := raw.PubSubNumSub(context.Background(), redistenant.Prefix(a)+"orders").Val()[redistenant.Prefix(a)+"orders"]; n != 1 {
		t.Errorf("%d subscribers on a's channel as the server names it, want 1", n)
	}
	// PUBSUB's replies name the tenant's channels without the prefix, and
	// only the tenant's.
	if got := c.PubSubChannels(ca, "*").Val(); !cmp.Equal(got, []string{"orders"}) {
		t.Errorf("a's PUBSUB CHANNELS: %v", got)
	}
	if got := c.PubSubChannels(ca, "ord*").Val(); !cmp.Equal(got, []string{"orders"}) {
		t.Errorf("a's PUBSUB CHANNELS ord*: %v", got)
	}
	if got := c.PubSubNumSub(cb, "orders", "none").Val(); !cmp.Equal(got, map[string]int64{"orders": 0, "none": 0}) {
		t.Errorf("b's PUBSUB NUMSUB (b's subscription is a pattern): %v", got)
	}
	if got := c.PubSubNumSub(ca, "orders").Val(); !cmp.Equal(got, map[string]int64{"orders": 1}) {
		t.Errorf("a's PUBSUB NUMSUB: %v", got)
	}
	// A PubSub is its tenant's: b cannot add to a's.
	if err := subA.Subscribe(cb, "more"); !errors.Is(err, redistenant.ErrTenantMismatch) {
		t.Errorf("b subscribing on a's PubSub: %v", err)
	}
	if err := subA.Subscribe(context.Background(), "more"); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("no tenant: %v", err)
	}
}

func TestPubSubChannelDelivers(t *testing.T) {
	t.Parallel()
	c, _, a, _ := setup(t)
	ca := ctxFor(a)
	sub := c.Subscribe(ca, "events")
	if _, err := sub.Receive(ca); err != nil {
		t.Fatal(err)
	}
	ch := sub.Channel(0)
	for i := range 3 {
		c.Publish(ca, "events", i)
	}
	for i := range 3 {
		select {
		case m := <-ch:
			if m.Channel != "events" || m.Payload != string(rune('0'+i)) {
				t.Errorf("message %d: %+v", i, m)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no message")
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-ch; open {
		t.Error("the channel is open after Close")
	}
}

// TestRawSubscribeIsRefusedOnTheWire: go-redis's own Subscribe writes past
// the hooks. Spelling another tenant's channel in full must not subscribe.
func TestRawSubscribeIsRefusedOnTheWire(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	ca := ctxFor(a)
	victim := redistenant.Prefix(b) + "secrets"
	for name, ps := range map[string]*redis.PubSub{
		"Subscribe":  c.Client.Subscribe(ca, victim),
		"PSubscribe": c.Client.PSubscribe(ca, redistenant.Prefix(b)+"*"),
		"SSubscribe": c.Client.SSubscribe(ca, victim),
	} {
		// Subscribing again reports the refusal (go-redis's Subscribe
		// drops the error of the first).
		var err error
		switch name {
		case "Subscribe":
			err = ps.Subscribe(ca, victim)
		case "PSubscribe":
			err = ps.PSubscribe(ca, redistenant.Prefix(b)+"*")
		case "SSubscribe":
			err = ps.SSubscribe(ca, victim)
		}
		if err == nil || !strings.Contains(err.Error(), "goredistenant") {
			t.Errorf("go-redis's %s of another tenant's channel: %v, want the guard's refusal", name, err)
		}
		// Nothing reaches it: b publishes, the raw subscription receives nothing.
		c.Publish(ctxFor(b), "secrets", "x")
		ctx, cancel := context.WithTimeout(ca, 300*time.Millisecond)
		if m, err := ps.ReceiveMessage(ctx); err == nil {
			t.Errorf("go-redis's %s received %+v", name, m)
		}
		cancel()
		_ = ps.Close()
	}
	if n := raw.PubSubNumSub(context.Background(), victim).Val()[victim]; n != 0 {
		t.Errorf("%d subscribers on the victim's channel", n)
	}
	if n := raw.PubSubNumPat(context.Background()).Val(); n != 0 {
		// other tests' patterns may exist in parallel runs; only report ours
		pats := raw.Do(context.Background(), "pubsub", "channels", redistenant.Prefix(b)+"*").Val()
		if s, ok := pats.([]any); ok && len(s) > 0 {
			t.Errorf("channels of the victim: %v", s)
		}
	}
}

func TestCommandProcessedTwiceIsPrefixedOnce(t *testing.T) {
	t.Parallel()
	c, raw, a, _ := setup(t)
	ctx := ctxFor(a)
	set := redis.NewStatusCmd(ctx, "set", "again", "v")
	for range 2 {
		if err := c.Process(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]any{"set", "again", "v"}, set.Args()); diff != "" {
		t.Errorf("arguments after the call (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(prefixed(a, "again"), rawKeys(t, raw, a)); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}

func TestConcurrentTenants(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t, func(o *redis.Options) { o.PoolSize = 2 })
	var wg sync.WaitGroup
	for _, tn := range []tenant.Tenant{a, b} {
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := ctxFor(tn)
				for i := range 50 {
					k := string(rune('a'+g)) + string(rune('0'+i%10))
					if err := c.Set(ctx, k, tn.ID, 0).Err(); err != nil {
						t.Error(err)
						return
					}
					if v := c.Get(ctx, k).Val(); v != tn.ID {
						t.Errorf("%s read %q", tn.Slug, v)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	for _, tn := range []tenant.Tenant{a, b} {
		if n := len(rawKeys(t, raw, tn)); n != 40 {
			t.Errorf("%s has %d keys, want 40", tn.Slug, n)
		}
	}
}
