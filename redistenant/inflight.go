package redistenant

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tenancykit/tenancy/tenant"
)

// ErrTenantInFlight is matched by the *InFlightError of a call that found
// its tenant with Config.MaxInFlight calls in flight, with
// Config.FailOverInFlight set.
var ErrTenantInFlight = errors.New("redistenant: the tenant has as many calls in flight as Config.MaxInFlight allows")

// InFlightError names the tenant and the bound a call found reached. It
// unwraps to [ErrTenantInFlight].
type InFlightError struct {
	Tenant      tenant.Tenant
	MaxInFlight int
}

func (e *InFlightError) Error() string {
	return fmt.Sprintf("redistenant: tenant %s has %d calls in flight, the most Config.MaxInFlight allows; retry later or raise the bound", e.Tenant, e.MaxInFlight)
}

// Unwrap returns [ErrTenantInFlight].
func (e *InFlightError) Unwrap() error { return ErrTenantInFlight }

// inflight bounds the calls each tenant has in flight: a call over the
// bound waits its turn (first come, first served within the tenant), or
// fails with fail.
type inflight struct {
	max  int
	fail bool
	mu   sync.Mutex
	m    map[tenant.Tenant]*flight
}

type flight struct {
	n       int
	waiters []chan struct{}
}

func newInflight(max int, fail bool) *inflight {
	if max <= 0 {
		return nil
	}
	return &inflight{max: max, fail: fail, m: make(map[tenant.Tenant]*flight)}
}

// enter takes one of ctx's tenant's places; the caller must call leave
// with the tenant when enter returned no error. A nil inflight bounds
// nothing.
func (f *inflight) enter(ctx context.Context) (tenant.Tenant, error) {
	t, err := tenant.Require(ctx)
	if f == nil || err != nil {
		return t, err
	}
	f.mu.Lock()
	fl := f.m[t]
	if fl == nil {
		fl = &flight{}
		f.m[t] = fl
	}
	if fl.n < f.max {
		fl.n++
		f.mu.Unlock()
		return t, nil
	}
	if f.fail {
		f.mu.Unlock()
		return t, &InFlightError{Tenant: t, MaxInFlight: f.max}
	}
	ready := make(chan struct{})
	fl.waiters = append(fl.waiters, ready)
	f.mu.Unlock()
	select {
	case <-ready:
		return t, nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	select {
	case <-ready:
		f.mu.Unlock()
		f.leave(t) // handed a place as the context ended: pass it on
	default:
		for i, w := range fl.waiters {
			if w == ready {
				fl.waiters = append(fl.waiters[:i], fl.waiters[i+1:]...)
				break
			}
		}
		f.mu.Unlock()
	}
	return t, ctx.Err()
}

// leave gives t's place to its next waiting call, or frees it.
func (f *inflight) leave(t tenant.Tenant) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.m[t]
	if len(fl.waiters) > 0 {
		close(fl.waiters[0])
		fl.waiters = fl.waiters[1:]
		return
	}
	fl.n--
	if fl.n == 0 {
		delete(f.m, t)
	}
}
