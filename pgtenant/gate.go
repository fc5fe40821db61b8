package pgtenant

import (
	"context"
	"sync"

	"github.com/tenancykit/tenancy/tenant"
)

// gate admits connections for tenants: at most total at once, at most a
// tenant's max for each tenant, waiting callers served round robin over
// tenants.
type gate struct {
	cfg   TenantLimits
	total int32

	mu      sync.Mutex
	inUse   int32
	tenants map[tenant.Tenant]*tenantQueue
	ring    []*tenantQueue // tenants with waiters, in turn order
	next    int            // the ring position served next
	free    []*tenantQueue // forgotten queues, for reuse
}

// tenantQueue is one tenant's held count and waiting callers.
type tenantQueue struct {
	t       tenant.Tenant
	held    int32
	max     int32
	waiters []chan struct{}
	inRing  bool
}

func newGate(cfg TenantLimits, total int32) *gate {
	return &gate{cfg: cfg, total: total, tenants: make(map[tenant.Tenant]*tenantQueue)}
}

// enter admits one connection for sc's tenant, waiting its turn if the
// tenant is at its budget or the pool is full.
func (g *gate) enter(ctx context.Context, sc scope) (*tenantQueue, error) {
	g.mu.Lock()
	q := g.tenants[sc.tenant]
	if q == nil {
		if n := len(g.free); n > 0 {
			q, g.free = g.free[n-1], g.free[:n-1]
			q.t = sc.tenant
		} else {
			q = &tenantQueue{t: sc.tenant}
		}
		g.tenants[sc.tenant] = q
	}
	q.max = sc.lim.max
	if q.held < q.max && g.inUse < g.total && len(q.waiters) == 0 {
		q.held++
		g.inUse++
		g.mu.Unlock()
		return q, nil
	}
	if sc.lim.fail && q.held >= q.max {
		g.forget(q)
		g.mu.Unlock()
		return nil, &LimitError{Tenant: sc.tenant, MaxConns: q.max}
	}
	ready := make(chan struct{})
	q.waiters = append(q.waiters, ready)
	if !q.inRing {
		q.inRing = true
		g.ring = append(g.ring, q)
	}
	g.mu.Unlock()
	select {
	case <-ready:
		return q, nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-ready:
		// Admitted as the context ended: hand the slot on.
		q.held--
		g.inUse--
		g.dispatch()
		g.forget(q)
	default:
		for i, w := range q.waiters {
			if w == ready {
				q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
				break
			}
		}
		if len(q.waiters) == 0 {
			g.unring(q)
		}
		g.dispatch()
		g.forget(q)
	}
	return nil, ctx.Err()
}

// leave returns a connection q's tenant held.
func (g *gate) leave(q *tenantQueue) {
	g.mu.Lock()
	q.held--
	g.inUse--
	g.dispatch()
	g.forget(q)
	g.mu.Unlock()
}

// dispatch admits waiting callers while the pool has room, taking the
// tenants of the ring in turn and skipping those at their budget.
func (g *gate) dispatch() {
	for g.inUse < g.total && len(g.ring) > 0 {
		admitted := false
		for range len(g.ring) {
			if len(g.ring) == 0 {
				return
			}
			if g.next >= len(g.ring) {
				g.next = 0
			}
			q := g.ring[g.next]
			if len(q.waiters) == 0 {
				g.unring(q)
				g.forget(q)
				continue
			}
			if q.held >= q.max {
				g.next++
				continue
			}
			w := q.waiters[0]
			q.waiters = q.waiters[1:]
			q.held++
			g.inUse++
			close(w)
			g.next++
			admitted = true
			break
		}
		if !admitted {
			return
		}
	}
}

// forget drops q when its tenant holds and awaits nothing.
func (g *gate) forget(q *tenantQueue) {
	if q.held == 0 && len(q.waiters) == 0 && !q.inRing && g.tenants[q.t] == q {
		delete(g.tenants, q.t)
		if len(g.free) < 64 {
			q.waiters = q.waiters[:0]
			g.free = append(g.free, q)
		}
	}
}

// unring takes q out of the turn order.
func (g *gate) unring(q *tenantQueue) {
	for i, r := range g.ring {
		if r == q {
			g.ring = append(g.ring[:i], g.ring[i+1:]...)
			if g.next > i {
				g.next--
			}
			break
		}
	}
	q.inRing = false
}
