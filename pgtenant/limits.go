package pgtenant

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tenancykit/tenancy/tenant"
)

// TenantLimits bounds what one tenant may take of a [Pool], so that a noisy
// tenant cannot starve the others. Set it in [Config.TenantLimits]; a nil
// TenantLimits (the default) bounds nothing.
//
// With limits on, every connection the pool hands out for a tenant — to a
// statement, a batch, a transaction, an OpenDB call, a [Conn] of
// [Pool.Acquire] — counts against that tenant's budget until it is returned,
// and the pool hands out at most PoolConfig.MaxConns connections at once. A
// call that finds its tenant at its budget, or the pool full, waits in a
// queue that serves the waiting tenants in turn (round robin over tenants,
// first come first served within a tenant), not in arrival order across
// tenants: a tenant with 32 callers waiting gets one connection for every
// one each other waiting tenant gets. The wait is bounded by the call's
// context. With [LimitFail], a call that finds its tenant at its budget
// returns a *[LimitError] at once instead of waiting.
//
// Connections taken through [Pool.Unscoped] are not bounded, but they count
// against the pool's total: while it holds some, the tenants share fewer,
// and waiting tenants are still served in turn rather than in pgxpool's
// own first-come order. (A connection hijacked from the Unscoped pool
// stays counted.)
//
// Size a budget for the connections one unit of work holds at once: a
// tenant whose code calls the pool (not the transaction) while holding its
// own open transaction needs two, and at a budget of one it waits for
// itself until its context ends.
type TenantLimits struct {
	// Default applies to every tenant For does not place in a tier. A zero
	// MaxConns in it means a fair share: max(1, PoolConfig.MaxConns/4).
	Default Limits
	// For returns the limits of one tenant (its tier), or ok false for
	// Default. A zero (or negative, or unknown) field of what it returns
	// takes Default's. It is
	// called once for every call of the pool (before any I/O), so make it
	// cheap: a map lookup, not a query. Nil means every tenant has Default.
	For func(t tenant.Tenant) (l Limits, ok bool)
}

// Limits are one tenant's budget.
type Limits struct {
	// MaxConns is the most connections the tenant may hold at once. Zero
	// means TenantLimits.Default's, and there zero means max(1,
	// PoolConfig.MaxConns/4). It is capped at PoolConfig.MaxConns.
	MaxConns int32
	// StatementTimeout bounds each statement of the tenant: it is set with
	// SET LOCAL (set_config(..., true)) in the tenant's scope statement, in
	// the same round trip, and a statement that runs longer is cancelled by
	// the server (SQLSTATE 57014). On a Conn of [Pool.Acquire] it is set for
	// the session and reset on release. Zero means Default's, and there
	// zero means the session's own statement_timeout. It bounds the
	// application's statements; it is not a sandbox: SQL that sets
	// statement_timeout itself (SET LOCAL in a transaction) replaces it
	// for that transaction.
	StatementTimeout time.Duration
	// OnLimit says what a call that finds the tenant at MaxConns does:
	// [LimitWait] (the zero value) or [LimitFail].
	OnLimit LimitAction
}

// LimitAction says what a call over its tenant's budget does.
type LimitAction int

const (
	// LimitWait waits for one of the tenant's connections to return,
	// bounded by the call's context. The default.
	LimitWait LimitAction = iota
	// LimitFail returns a *LimitError at once.
	LimitFail
)

func (a LimitAction) String() string {
	switch a {
	case LimitWait:
		return "LimitWait"
	case LimitFail:
		return "LimitFail"
	}
	return fmt.Sprintf("LimitAction(%d)", int(a))
}

// ErrTenantLimit is matched by the *LimitError of a call that found its
// tenant holding every connection its budget allows, with [LimitFail].
var ErrTenantLimit = errors.New("pgtenant: the tenant holds every connection its budget allows")

// LimitError names the tenant and the budget a call found exhausted. It
// unwraps to [ErrTenantLimit].
type LimitError struct {
	Tenant   tenant.Tenant
	MaxConns int32
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("pgtenant: tenant %s holds %d of %d connections its budget allows (TenantLimits, OnLimit LimitFail); retry later or raise its Limits.MaxConns", e.Tenant, e.MaxConns, e.MaxConns)
}

// Unwrap returns [ErrTenantLimit].
func (e *LimitError) Unwrap() error { return ErrTenantLimit }

// limits is a tenant's resolved budget, carried in its scope.
type limits struct {
	max     int32
	timeout time.Duration
	fail    bool
}

// limitsFor resolves t's budget (Default, then its tier, then the fair
// share and the cap).
func (g *gate) limitsFor(t tenant.Tenant) limits {
	l := g.cfg.Default
	if g.cfg.For != nil {
		if tier, ok := g.cfg.For(t); ok {
			if tier.MaxConns > 0 {
				l.MaxConns = tier.MaxConns
			}
			if tier.StatementTimeout > 0 {
				l.StatementTimeout = tier.StatementTimeout
			}
			if tier.OnLimit == LimitFail {
				l.OnLimit = tier.OnLimit
			}
		}
	}
	r := limits{max: l.MaxConns, timeout: l.StatementTimeout, fail: l.OnLimit == LimitFail}
	if r.max <= 0 {
		r.max = max(1, g.total/4)
	}
	r.max = min(r.max, g.total)
	return r
}

// timeoutText is the statement_timeout value for the scope statement: whole
// milliseconds (at least 1), or "" for the session's own.
func (l limits) timeoutText() string {
	if l.timeout <= 0 {
		return ""
	}
	return strconv.FormatInt(max(1, l.timeout.Milliseconds()), 10) + "ms"
}

func (c TenantLimits) validate() error {
	check := func(name string, l Limits) error {
		if l.MaxConns < 0 {
			return fmt.Errorf("%w: %s.MaxConns is %d; use a positive number, or 0 for a fair share", ErrInvalidConfig, name, l.MaxConns)
		}
		if l.StatementTimeout < 0 {
			return fmt.Errorf("%w: %s.StatementTimeout is %v; use a positive duration, or 0 for the session's own", ErrInvalidConfig, name, l.StatementTimeout)
		}
		if l.OnLimit != LimitWait && l.OnLimit != LimitFail {
			return fmt.Errorf("%w: %s.OnLimit is %v; use LimitWait or LimitFail", ErrInvalidConfig, name, l.OnLimit)
		}
		return nil
	}
	return check("TenantLimits.Default", c.Default)
}

// Observer is told of every connection a [Pool] hands to a tenant and of
// its return: the hooks for per-tenant pool metrics (package tenantotel
// implements it). Set it in [Config.Observer]. Its methods are called
// synchronously on the call's path; keep them cheap and safe for
// concurrent use.
type Observer interface {
	// Acquired says a call of t waited wait for a connection. err is why
	// it got none (its context ended, a *LimitError, the pool's own error),
	// or nil.
	Acquired(ctx context.Context, t tenant.Tenant, wait time.Duration, err error)
	// Released says t returned a connection it held for held.
	Released(t tenant.Tenant, held time.Duration)
}

// lease is what a held connection owes its tenant's budget and the
// Observer; it lives in the connection's state while the connection is out.
type lease struct {
	q     *tenantQueue
	t     tenant.Tenant
	since time.Time
	on    bool
}
