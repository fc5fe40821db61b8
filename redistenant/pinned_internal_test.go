package redistenant

import (
	"testing"

	"github.com/tenancykit/tenancy/internal/testenv"
)

// TestMirrorsMatchRueidis guards the unsafe reads of rueidis's command
// layout: if an upgrade changes it, this fails (and the package falls back to
// copying every command).
func TestMirrorsMatchRueidis(t *testing.T) {
	if !mirrorsMatch {
		t.Fatal("rueidis's Completed/Cacheable/Builder layout changed; update pinned.go")
	}
	c := testenv.RedisClient(t)
	plain := c.B().Get().Key("k").Build()
	pinned := c.B().Get().Key("k").Build().Pin()
	if pinnedCompleted(&plain) || !pinnedCompleted(&pinned) {
		t.Errorf("pinned detection: plain %v, pinned %v", pinnedCompleted(&plain), pinnedCompleted(&pinned))
	}
	cache := c.B().Get().Key("k").Cache()
	pinnedCache := c.B().Get().Key("k").Cache().Pin()
	if pinnedCacheable(&cache) || !pinnedCacheable(&pinnedCache) {
		t.Error("pinned detection of Cacheable")
	}
	b, ok := uncheckedBuilder()
	if !ok {
		t.Fatal("no unchecked builder")
	}
	cmd := b.Mset().KeyValue().KeyValue("a", "1").KeyValue("b", "2").Build() // different slots: no panic
	ks := *completedSlot(&cmd)
	if ks&noSlot == 0 {
		t.Errorf("unchecked builder's command has slot %x, want the no-slot flag", ks)
	}
	clusterSlot(&ks)
	if ks != initSlot {
		t.Errorf("clusterSlot = %x, want initSlot", ks)
	}
}
