package pgtenant

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tenancykit/tenancy/tenant"
)

// TestGateServesTenantsInTurn: with the pool full, waiting callers are
// admitted round robin over tenants, not in arrival order: tenant a queued
// four callers before b and c queued theirs, and the admissions alternate.
func TestGateServesTenantsInTurn(t *testing.T) {
	g := newGate(TenantLimits{}, 1)
	a, b, c := tenant.Tenant{ID: "a", Slug: "a"}, tenant.Tenant{ID: "b", Slug: "b"}, tenant.Tenant{ID: "c", Slug: "c"}
	scopeOf := func(tn tenant.Tenant) scope { return scope{tenant: tn, lim: limits{max: 1}} }
	first, err := g.enter(context.Background(), scopeOf(a))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	waiting := 0
	queue := func(tn tenant.Tenant) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, err := g.enter(context.Background(), scopeOf(tn))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, tn.ID)
			mu.Unlock()
			g.leave(q)
		}()
		// Let it reach the queue before the next one.
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			g.mu.Lock()
			n := 0
			for _, q := range g.tenants {
				n += len(q.waiters)
			}
			g.mu.Unlock()
			if n == waiting+1 {
				break
			}
		}
		waiting++
	}
	for _, tn := range []tenant.Tenant{a, a, a, a, b, c, b} {
		queue(tn)
	}
	g.leave(first)
	wg.Wait()
	if diff := cmp.Diff([]string{"a", "b", "c", "a", "b", "a", "a"}, order); diff != "" {
		t.Errorf("admission order (-want +got):\n%s", diff)
	}
	if len(g.tenants) != 0 || len(g.ring) != 0 || g.inUse != 0 {
		t.Errorf("gate not empty after all left: %d tenants, %d in the ring, %d in use", len(g.tenants), len(g.ring), g.inUse)
	}
}

// TestGateCancelledWaiterLeavesNothing: a caller whose context ends while
// it waits leaves the queue; the next caller gets the slot, and the gate
// is empty once everyone left.
func TestGateCancelledWaiterLeavesNothing(t *testing.T) {
	g := newGate(TenantLimits{}, 1)
	a, b := tenant.Tenant{ID: "a", Slug: "a"}, tenant.Tenant{ID: "b", Slug: "b"}
	sa, sb := scope{tenant: a, lim: limits{max: 1}}, scope{tenant: b, lim: limits{max: 1}}
	held, err := g.enter(context.Background(), sa)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.enter(ctx, sb); err != context.DeadlineExceeded {
		t.Fatalf("waiter: %v; want context.DeadlineExceeded", err)
	}
	done := make(chan *tenantQueue)
	go func() {
		q, err := g.enter(context.Background(), sb)
		if err != nil {
			t.Error(err)
		}
		done <- q
	}()
	time.Sleep(10 * time.Millisecond)
	g.leave(held)
	g.leave(<-done)
	if len(g.tenants) != 0 || len(g.ring) != 0 || g.inUse != 0 {
		t.Errorf("gate not empty after all left: %d tenants, %d in the ring, %d in use", len(g.tenants), len(g.ring), g.inUse)
	}
}
