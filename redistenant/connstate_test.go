package redistenant_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// connStateCommands change or read the state of the connection rueidis
// shares between tenants; each is refused on the shared client.
var connStateCommands = [][]string{
	{"MULTI"}, {"EXEC"}, {"DISCARD"}, {"WATCH", "k"}, {"UNWATCH"},
	{"SELECT", "1"}, {"SWAPDB", "0", "1"}, {"RESET"}, {"HELLO", "3"}, {"AUTH", "x"}, {"QUIT"}, {"MONITOR"},
	{"READONLY"}, {"READWRITE"}, {"ASKING"},
	{"CLIENT", "REPLY", "OFF"}, {"CLIENT", "SETNAME", "tenant-a"}, {"CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "k"},
	{"CLIENT", "TRACKING", "OFF"}, {"CLIENT", "CACHING", "yes"}, {"CLIENT", "TRACKINGINFO"}, {"CLIENT", "GETREDIR"},
	{"CLIENT", "NO-EVICT", "on"}, {"CLIENT", "NO-TOUCH", "on"}, {"CLIENT", "KILL", "ID", "1"}, {"CLIENT", "PAUSE", "10"},
	{"CLIENT", "UNPAUSE"}, {"CLIENT", "UNBLOCK", "1"}, {"CLIENT", "LIST"},
	{"SUBSCRIBE", "ch"}, {"PSUBSCRIBE", "p*"}, {"SSUBSCRIBE", "ch"}, {"UNSUBSCRIBE"}, {"PUNSUBSCRIBE"},
}

// build builds argv; rueidis's Arbitrary refuses the subscribe family.
func build(c *redistenant.Client, argv []string) rueidis.Completed {
	switch argv[0] {
	case "SUBSCRIBE":
		return c.B().Subscribe().Channel(argv[1:]...).Build()
	case "PSUBSCRIBE":
		return c.B().Psubscribe().Pattern(argv[1:]...).Build()
	case "SSUBSCRIBE":
		return c.B().Ssubscribe().Channel(argv[1:]...).Build()
	case "UNSUBSCRIBE":
		return c.B().Unsubscribe().Build()
	case "PUNSUBSCRIBE":
		return c.B().Punsubscribe().Build()
	}
	return c.B().Arbitrary(argv...).Build()
}

// TestConnectionStateIsRefusedOnTheSharedClient: tenant A's connection-state
// commands, sent while tenant B works on the same client, are refused before
// anything is sent; B's replies and writes are exactly its own, and the
// connection's name and tracking are unchanged.
func TestConnectionStateIsRefusedOnTheSharedClient(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	ctxA, ctxB := ctxFor(a), ctxFor(b)
	nameBefore, _ := raw.Do(context.Background(), raw.B().ClientGetname().Build()).ToString()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bErr error
	wg.Go(func() { // tenant B: SET/GET its own counter until A is done
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := strconv.Itoa(i)
			if err := c.Do(ctxB, c.B().Set().Key("k").Value(v).Build()).Error(); err != nil {
				bErr = err
				return
			}
			got, err := c.Do(ctxB, c.B().Get().Key("k").Build()).ToString()
			if err != nil || got != v {
				bErr = fmt.Errorf("tenant B read %q (%v) after writing %q", got, err, v)
				return
			}
		}
	})
	for range 20 {
		for _, argv := range connStateCommands {
			err := c.Do(ctxA, build(c, argv)).Error()
			if !errors.Is(err, redistenant.ErrConnectionState) || !errors.Is(err, redistenant.ErrCommandNotAllowed) {
				t.Fatalf("Do(%v) = %v, want ErrConnectionState", argv, err)
			}
			var ce *redistenant.CommandError
			if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "use ") {
				t.Fatalf("Do(%v): %v names no alternative", argv, err)
			}
		}
	}
	close(stop)
	wg.Wait()
	if bErr != nil {
		t.Fatal(bErr)
	}
	if nameAfter, _ := raw.Do(context.Background(), raw.B().ClientGetname().Build()).ToString(); nameAfter != nameBefore {
		t.Errorf("connection name changed from %q to %q", nameBefore, nameAfter)
	}
	info, err := raw.Do(context.Background(), raw.B().ClientTrackinginfo().Build()).ToString()
	if err == nil && strings.Contains(info, a.ID) {
		t.Errorf("tracking info names tenant A: %s", info)
	}
}

// TestDoMultiBlocks: on the shared client MULTI/EXEC run only as complete
// blocks in one DoMulti, and then they work.
func TestDoMultiBlocks(t *testing.T) {
	t.Parallel()
	c, raw, a, _ := setup(t)
	ctx := ctxFor(a)
	res := c.DoMulti(ctx, c.B().Multi().Build(), c.B().Set().Key("x").Value("1").Build(), c.B().Incr().Key("x").Build(), c.B().Exec().Build())
	vals, err := res[3].ToArray()
	if err != nil || len(vals) != 2 {
		t.Fatalf("EXEC: %v, %v", vals, err)
	}
	if n, _ := vals[1].AsInt64(); n != 2 {
		t.Errorf("INCR in the block = %d, want 2", n)
	}
	if got := rawKeys(t, raw, a); len(got) != 1 || got[0] != redistenant.Prefix(a)+"x" {
		t.Errorf("keys %v", got)
	}
	for name, multi := range map[string][]rueidis.Completed{
		"MULTI alone":   {c.B().Multi().Build(), c.B().Set().Key("y").Value("1").Build()},
		"EXEC alone":    {c.B().Set().Key("y").Value("1").Build(), c.B().Exec().Build()},
		"nested":        {c.B().Multi().Build(), c.B().Multi().Build(), c.B().Exec().Build(), c.B().Exec().Build()},
		"WATCH in it":   {c.B().Watch().Key("x").Build(), c.B().Multi().Build(), c.B().Exec().Build()},
		"DISCARD alone": {c.B().Discard().Build()},
	} {
		for i, r := range c.DoMulti(ctx, multi...) {
			if !errors.Is(r.Error(), redistenant.ErrConnectionState) {
				t.Errorf("%s: result %d = %v, want ErrConnectionState", name, i, r.Error())
			}
		}
	}
	if v, _ := c.Do(ctx, c.B().Get().Key("y").Build()).ToString(); v != "" {
		t.Errorf("a refused DoMulti ran in part: y = %q", v)
	}
}

// TestOptimisticTransactionOnDedicated: WATCH/MULTI/EXEC on a dedicated
// connection for two tenants, with conflict detection, keys prefixed.
func TestOptimisticTransactionOnDedicated(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	for _, tn := range []tenant.Tenant{a, b} {
		ctx := ctxFor(tn)
		if err := c.Do(ctx, c.B().Set().Key("balance").Value("10").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		// Without interference the transaction commits.
		err := c.Dedicated(func(d rueidis.DedicatedClient) error {
			if err := d.Do(ctx, d.B().Watch().Key("balance").Build()).Error(); err != nil {
				return err
			}
			n, err := d.Do(ctx, d.B().Get().Key("balance").Build()).AsInt64()
			if err != nil {
				return err
			}
			res := d.DoMulti(ctx, d.B().Multi().Build(), d.B().Set().Key("balance").Value(strconv.FormatInt(n+5, 10)).Build(), d.B().Exec().Build())
			_, err = res[2].ToArray()
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", tn.Slug, err)
		}
		// A write by someone else between WATCH and EXEC aborts it.
		err = c.Dedicated(func(d rueidis.DedicatedClient) error {
			if err := d.Do(ctx, d.B().Watch().Key("balance").Build()).Error(); err != nil {
				return err
			}
			if err := c.Do(ctx, c.B().Set().Key("balance").Value("100").Build()).Error(); err != nil {
				return err
			}
			res := d.DoMulti(ctx, d.B().Multi().Build(), d.B().Set().Key("balance").Value("0").Build(), d.B().Exec().Build())
			if !rueidis.IsRedisNil(res[2].Error()) {
				return fmt.Errorf("EXEC after a conflicting write: %v, want nil (aborted)", res[2].Error())
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", tn.Slug, err)
		}
		if v, _ := c.Do(ctx, c.B().Get().Key("balance").Build()).ToString(); v != "100" {
			t.Errorf("%s: balance %q, want 100", tn.Slug, v)
		}
		if got := rawKeys(t, raw, tn); len(got) != 1 || got[0] != redistenant.Prefix(tn)+"balance" {
			t.Errorf("%s: keys %v", tn.Slug, got)
		}
	}
	// A WATCH left open is cleared before the connection goes back.
	d, release := c.Dedicate()
	ctx := ctxFor(a)
	if err := d.Do(ctx, d.B().Watch().Key("balance").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := d.Do(ctx, d.B().Multi().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	release()
	err := c.Dedicated(func(d rueidis.DedicatedClient) error {
		// A fresh MULTI works: the connection is in no transaction.
		res := d.DoMulti(ctx, d.B().Multi().Build(), d.B().Get().Key("balance").Build(), d.B().Exec().Build())
		return res[2].Error()
	})
	if err != nil {
		t.Errorf("after an abandoned MULTI: %v", err)
	}
}

// TestRandomCommandSequences: two tenants send random sequences — ordinary
// commands on the same logical keys mixed with connection-state commands —
// concurrently on one client. Each checks every reply against its own model:
// no key, reply or error crosses.
func TestRandomCommandSequences(t *testing.T) {
	t.Parallel()
	c, _, a, b := setup(t)
	randomSequences(t, c, a, b)
}

// TestRandomCommandSequencesCluster is the same on the Redis Cluster.
func TestRandomCommandSequencesCluster(t *testing.T) {
	t.Parallel()
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: testenv.RedisCluster(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	c := redistenant.New(raw, redistenant.Config{})
	a, b := testenv.Tenant(t, "rca"), testenv.Tenant(t, "rcb")
	t.Cleanup(func() {
		for _, tn := range []tenant.Tenant{a, b} {
			_, _ = c.Purge(context.Background(), tn)
		}
	})
	randomSequences(t, c, a, b)
}

func randomSequences(t *testing.T, c *redistenant.Client, a, b tenant.Tenant) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for w, tn := range []tenant.Tenant{a, b} {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			ctx := ctxFor(tn)
			model := map[string]string{}
			for i := range 2000 {
				k := "k" + strconv.Itoa(r.IntN(4))
				switch op := r.IntN(6); op {
				case 0:
					v := tn.Slug + strconv.Itoa(i)
					if err := c.Do(ctx, c.B().Set().Key(k).Value(v).Build()).Error(); err != nil {
						errs[w] = fmt.Errorf("seed %d op %d SET: %w", seed, i, err)
						return
					}
					model[k] = v
				case 1:
					got, err := c.Do(ctx, c.B().Get().Key(k).Build()).ToString()
					if rueidis.IsRedisNil(err) {
						got, err = "", nil
					}
					if err != nil || got != model[k] {
						errs[w] = fmt.Errorf("seed %d op %d GET %s = %q (%v), want %q", seed, i, k, got, err, model[k])
						return
					}
				case 2:
					if err := c.Do(ctx, c.B().Del().Key(k).Build()).Error(); err != nil {
						errs[w] = fmt.Errorf("seed %d op %d DEL: %w", seed, i, err)
						return
					}
					delete(model, k)
				case 3:
					v := tn.Slug + "m" + strconv.Itoa(i)
					res := c.DoMulti(ctx, c.B().Multi().Build(), c.B().Set().Key(k).Value(v).Build(), c.B().Get().Key(k).Build(), c.B().Exec().Build())
					vals, err := res[3].ToArray()
					if err != nil || len(vals) != 2 {
						errs[w] = fmt.Errorf("seed %d op %d MULTI block: %v (%v)", seed, i, vals, err)
						return
					}
					if got, _ := vals[1].ToString(); got != v {
						errs[w] = fmt.Errorf("seed %d op %d: GET in the block = %q, want %q", seed, i, got, v)
						return
					}
					model[k] = v
				default:
					argv := connStateCommands[r.IntN(len(connStateCommands))]
					if err := c.Do(ctx, build(c, argv)).Error(); !errors.Is(err, redistenant.ErrConnectionState) {
						errs[w] = fmt.Errorf("seed %d op %d %v: %v", seed, i, argv, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
