package redistenant_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func TestReplyHelpersStripKeys(t *testing.T) {
	t.Parallel()
	c, _, a, _ := setup(t)
	ctx := ctxFor(a)
	for _, cmd := range []rueidis.Completed{
		c.B().Rpush().Key("q1").Element("job1", "job2").Build(),
		c.B().Zadd().Key("z").ScoreMember().ScoreMember(1, "low").ScoreMember(2, "high").Build(),
		c.B().Xadd().Key("events").Id("1-1").FieldValue().FieldValue("k", "v").Build(),
	} {
		if err := c.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	key, elem, err := c.DoPop(ctx, c.B().Blpop().Key("empty", "q1").Timeout(1).Build())
	if err != nil || key != "q1" || elem != "job1" {
		t.Errorf("DoPop = %q, %q, %v", key, elem, err)
	}
	zkey, member, err := c.DoZPop(ctx, c.B().Bzpopmin().Key("z").Timeout(1).Build())
	if err != nil || zkey != "z" || member != (rueidis.ZScore{Member: "low", Score: 1}) {
		t.Errorf("DoZPop = %q, %v, %v", zkey, member, err)
	}
	kv, err := c.DoLMPop(ctx, c.B().Lmpop().Numkeys(2).Key("empty", "q1").Left().Build())
	if diff := cmp.Diff(rueidis.KeyValues{Key: "q1", Values: []string{"job2"}}, kv); err != nil || diff != "" {
		t.Errorf("DoLMPop (-want +got):\n%s %v", diff, err)
	}
	kz, err := c.DoZMPop(ctx, c.B().Zmpop().Numkeys(1).Key("z").Max().Build())
	if err != nil || kz.Key != "z" || len(kz.Values) != 1 || kz.Values[0].Member != "high" {
		t.Errorf("DoZMPop = %+v, %v", kz, err)
	}
	streams, err := c.DoXRead(ctx, c.B().Xread().Streams().Key("events").Id("0").Build())
	if err != nil || len(streams["events"]) != 1 || streams["events"][0].FieldValues["k"] != "v" {
		t.Errorf("DoXRead = %v, %v", streams, err)
	}
	if _, _, err := c.DoPop(context.Background(), c.B().Blpop().Key("q1").Timeout(1).Build()); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("DoPop without tenant: %v", err)
	}
}

// TestAdversarialIDs exercises tenant IDs at the edge of validation: the
// longest allowed, and every allowed punctuation, stay confined; IDs that
// could break the prefix apart never reach Redis.
func TestAdversarialIDs(t *testing.T) {
	t.Parallel()
	raw := testenv.RedisClient(t)
	c := redistenant.New(raw, redistenant.Config{})
	long := testenv.UniqueID("long")
	long += strings.Repeat("Z", tenant.MaxIDLen-len(long)) // exactly 64 bytes
	edge := []tenant.Tenant{
		{ID: long, Slug: "edge_long"},
		{ID: "-_-" + testenv.UniqueID("_"), Slug: "edge_punct"},
	}
	for _, tn := range edge {
		if err := tn.Validate(); err != nil {
			t.Fatalf("%q: %v", tn.ID, err)
		}
		t.Cleanup(func() { _, _ = c.Purge(context.Background(), tn) })
		if err := c.Do(ctxFor(tn), c.B().Set().Key("k").Value(tn.ID).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		got, err := raw.Do(context.Background(), raw.B().Get().Key("t:{"+tn.ID+"}:k").Build()).ToString()
		if err != nil || got != tn.ID {
			t.Errorf("%q: stored %q, %v", tn.ID, got, err)
		}
	}
	// IDs built to collide prefixes or escape the hash tag are invalid, so
	// the context is refused before anything is sent.
	for _, id := range []string{"acme:b", "acme}:x", "{acme}", "ac*me", "a[b]", `a\b`, "a b", strings.Repeat("x", tenant.MaxIDLen+1)} {
		err := c.Do(ctxFor(tenant.Tenant{ID: id, Slug: "evil"}), c.B().Get().Key("k").Build()).Error()
		if !errors.Is(err, tenant.ErrInvalidID) {
			t.Errorf("ID %q: %v, want tenant.ErrInvalidID", id, err)
		}
	}
}
