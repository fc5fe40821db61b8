package pgtenant

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/tenant"
)

// DB is what *Pool and *Router have in common: the calls that run in the
// tenant of their context. Code written against DB (sqlc's DBTX is a subset)
// runs on one placement or on many.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
	Acquire(ctx context.Context) (*Conn, error)
	Ping(ctx context.Context) error
}

var (
	_ DB = (*Pool)(nil)
	_ DB = (*Router)(nil)
)

// Locator says which placement holds a tenant. *provision.Registry is one:
// it answers from its registry, and wraps [ErrTenantMoving] while the tenant
// is being cut over to another placement.
type Locator interface {
	Placement(ctx context.Context, t tenant.Tenant) (string, error)
}

// LocatorFunc adapts a function to [Locator].
type LocatorFunc func(ctx context.Context, t tenant.Tenant) (string, error)

// Placement calls f.
func (f LocatorFunc) Placement(ctx context.Context, t tenant.Tenant) (string, error) {
	return f(ctx, t)
}

var (
	// ErrUnknownPlacement is matched by the error of a call whose tenant is
	// placed where the Router has no pool: the call fails before any I/O,
	// never on another placement.
	ErrUnknownPlacement = errors.New("pgtenant: the tenant's placement has no pool in this Router")
	// ErrTenantMoving is matched by the error of a call whose tenant stayed
	// in its cut-over to another placement longer than RouterConfig.MoveWait
	// (or its context): the call did no I/O. Retry it.
	ErrTenantMoving = errors.New("pgtenant: the tenant is moving to another placement")
)

// FenceCode is the SQLSTATE with which a placement refuses a write of a
// tenant that has moved away from it (provision's Move installs the
// fence): the write did not happen. A Router that sees it forgets where the
// tenant was, so the next call locates it again.
const FenceCode = "TN010"

// PlacementError is the error of a call the Router could not place.
type PlacementError struct {
	// Tenant is the call's tenant.
	Tenant tenant.Tenant
	// Placement is the placement the Locator named ("" if it named none).
	Placement string
	// Known are the placements the Router has pools for, sorted.
	Known []string
	// Err is ErrUnknownPlacement, ErrTenantMoving, or the Locator's error.
	Err error
}

func (e *PlacementError) Error() string {
	switch {
	case errors.Is(e.Err, ErrUnknownPlacement):
		return fmt.Sprintf("pgtenant: tenant %q is placed in %q, which this Router has no pool for (it has %s)",
			e.Tenant.Slug, e.Placement, strings.Join(e.Known, ", "))
	case errors.Is(e.Err, ErrTenantMoving):
		return fmt.Sprintf("pgtenant: tenant %q is being cut over to another placement: %v", e.Tenant.Slug, e.Err)
	}
	return fmt.Sprintf("pgtenant: locate tenant %q: %v", e.Tenant.Slug, e.Err)
}

// Unwrap returns Err.
func (e *PlacementError) Unwrap() error { return e.Err }

// RouterConfig configures [NewRouter]. Zero fields mean their documented
// defaults.
type RouterConfig struct {
	// Placements are the pools by placement name, one per database: each
	// made by [New] with the Config of its placement (its URL, its Mode:
	// SharedTables for a pool placement, SchemaPerTenant for bridge and
	// silo). Required. The Router does not close them.
	Placements map[string]*Pool
	// Locator says where each tenant is; usually the *provision.Registry.
	// Required.
	Locator Locator
	// TTL is how long the Router trusts a tenant's placement without
	// hearing otherwise. Run provision's Registry.Watch with the Router as
	// its Invalidator and a move is seen at once; TTL bounds the staleness
	// when the watch is down. Defaults to 10 s.
	TTL time.Duration
	// MoveWait is how long a call waits while its tenant is being cut over
	// (its writes are frozen) before it fails with ErrTenantMoving. The
	// context bounds the wait too. Defaults to 5 s.
	MoveWait time.Duration
}

// Router sends each call to the pool of its tenant's placement: statements,
// batches, transactions, Acquire, CopyFrom and [OpenDB] (a *Router is a
// [DB]). Every guarantee of *Pool holds, because the call is the placement
// Pool's own: the tenant's scope in the same round trip, nothing left on a
// connection, no tenant in the context an error before any I/O. A
// transaction or Conn stays on the placement it began on.
//
// A tenant whose placement has no pool in the Router, or that the Locator
// cannot place, fails with a *PlacementError before any I/O — never on
// another placement. While the tenant is being cut over to another
// placement the call waits (up to MoveWait), then goes to the new one.
//
// The Router caches placements per tenant. It is an Invalidator for
// provision's Registry.Watch (Invalidate, InvalidateAll); a write refused
// by an old placement's fence (SQLSTATE [FenceCode]) drops the cached
// placement too. It is safe for concurrent use.
type Router struct {
	cfg   RouterConfig
	known []string

	mu    sync.RWMutex
	byID  map[string]routed
	slugs map[string]string // slug → ID, for Invalidate by slug
	gen   uint64            // bumped by InvalidateAll
}

type routed struct {
	pool      *Pool
	placement string
	expires   time.Time
}

// NewRouter returns a Router over cfg.Placements.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if len(cfg.Placements) == 0 {
		return nil, fmt.Errorf("%w: RouterConfig.Placements is empty; give the pool of every placement", ErrInvalidConfig)
	}
	if cfg.Locator == nil {
		return nil, fmt.Errorf("%w: RouterConfig.Locator is nil; give the provision.Registry, or a LocatorFunc", ErrInvalidConfig)
	}
	known := make([]string, 0, len(cfg.Placements))
	for name, p := range cfg.Placements {
		if p == nil {
			return nil, fmt.Errorf("%w: RouterConfig.Placements[%q] is nil", ErrInvalidConfig, name)
		}
		known = append(known, name)
	}
	slices.Sort(known)
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.MoveWait <= 0 {
		cfg.MoveWait = 5 * time.Second
	}
	cfg.Placements = maps.Clone(cfg.Placements)
	return &Router{cfg: cfg, known: known, byID: map[string]routed{}, slugs: map[string]string{}}, nil
}

// movePoll is how often a call waiting on a cut-over asks the Locator.
const movePoll = 20 * time.Millisecond

// Pool returns the pool of the placement of ctx's tenant.
func (r *Router) Pool(ctx context.Context) (*Pool, error) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	e, hit := r.byID[t.ID]
	r.mu.RUnlock()
	if hit && time.Now().Before(e.expires) {
		return e.pool, nil
	}
	return r.locate(ctx, t)
}

func (r *Router) locate(ctx context.Context, t tenant.Tenant) (*Pool, error) {
	var deadline time.Time
	for {
		r.mu.RLock()
		gen := r.gen
		r.mu.RUnlock()
		name, err := r.cfg.Locator.Placement(ctx, t)
		if errors.Is(err, ErrTenantMoving) && ctx.Err() == nil {
			if deadline.IsZero() {
				deadline = time.Now().Add(r.cfg.MoveWait)
			}
			if time.Now().Before(deadline) {
				timer := time.NewTimer(movePoll)
				select {
				case <-ctx.Done():
					timer.Stop()
				case <-timer.C:
				}
				continue
			}
		}
		if err != nil {
			return nil, &PlacementError{Tenant: t, Placement: name, Known: r.known, Err: err}
		}
		p, ok := r.cfg.Placements[name]
		if !ok {
			return nil, &PlacementError{Tenant: t, Placement: name, Known: r.known, Err: ErrUnknownPlacement}
		}
		r.mu.Lock()
		if r.gen == gen {
			r.byID[t.ID] = routed{pool: p, placement: name, expires: time.Now().Add(r.cfg.TTL)}
			r.slugs[t.Slug] = t.ID
		}
		r.mu.Unlock()
		return p, nil
	}
}

// Placement returns the name of the placement the Router sends ctx's
// tenant to.
func (r *Router) Placement(ctx context.Context) (string, error) {
	p, err := r.Pool(ctx)
	if err != nil {
		return "", err
	}
	for name, q := range r.cfg.Placements {
		if q == p {
			return name, nil
		}
	}
	return "", ErrUnknownPlacement // not reached: Pool returns one of them
}

// Invalidate drops the cached placement of the tenant with this ID or
// slug; see provision's Registry.Watch.
func (r *Router) Invalidate(key string) {
	r.mu.Lock()
	if id, ok := r.slugs[key]; ok {
		delete(r.slugs, key)
		delete(r.byID, id)
	}
	delete(r.byID, key)
	r.mu.Unlock()
}

// InvalidateAll drops every cached placement.
func (r *Router) InvalidateAll() {
	r.mu.Lock()
	clear(r.byID)
	clear(r.slugs)
	r.gen++
	r.mu.Unlock()
}

// fenced drops ctx's tenant's placement if err is an old placement's fence.
func (r *Router) fenced(ctx context.Context, err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == FenceCode {
		if t, ok := tenant.FromContext(ctx); ok {
			r.Invalidate(t.ID)
		}
	}
}

// Exec runs sql on the tenant's placement; see [Pool.Exec].
func (r *Router) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	p, err := r.Pool(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ct, err := p.Exec(ctx, sql, args...)
	r.fenced(ctx, err)
	return ct, err
}

// Query runs sql on the tenant's placement; see [Pool.Query].
func (r *Router) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	p, err := r.Pool(ctx)
	if err != nil {
		return errRows{err}, err
	}
	return p.Query(ctx, sql, args...)
}

// QueryRow runs sql on the tenant's placement; see [Pool.QueryRow].
func (r *Router) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	p, err := r.Pool(ctx)
	if err != nil {
		return &row{rows: errRows{err}}
	}
	return p.QueryRow(ctx, sql, args...)
}

// SendBatch sends b on the tenant's placement; see [Pool.SendBatch].
func (r *Router) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	p, err := r.Pool(ctx)
	if err != nil {
		return failedBatch(b, err)
	}
	return p.SendBatch(ctx, b)
}

// CopyFrom copies rows on the tenant's placement; see [Pool.CopyFrom].
func (r *Router) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	p, err := r.Pool(ctx)
	if err != nil {
		return 0, err
	}
	n, err := p.CopyFrom(ctx, tableName, columnNames, rowSrc)
	r.fenced(ctx, err)
	return n, err
}

// Begin starts a transaction on the tenant's placement; see [Pool.Begin].
func (r *Router) Begin(ctx context.Context) (pgx.Tx, error) {
	return r.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx starts a transaction on the tenant's placement; see
// [Pool.BeginTx]. The transaction stays there.
func (r *Router) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	p, err := r.Pool(ctx)
	if err != nil {
		return nil, err
	}
	return p.BeginTx(ctx, opts)
}

// Acquire takes a connection of the tenant's placement; see [Pool.Acquire].
func (r *Router) Acquire(ctx context.Context) (*Conn, error) {
	p, err := r.Pool(ctx)
	if err != nil {
		return nil, err
	}
	return p.Acquire(ctx)
}

// Ping pings the tenant's placement, or, with no tenant in ctx, every
// placement.
func (r *Router) Ping(ctx context.Context) error {
	if _, ok := tenant.FromContext(ctx); ok {
		p, err := r.Pool(ctx)
		if err != nil {
			return err
		}
		return p.Ping(ctx)
	}
	var errs []error
	for _, name := range r.known {
		if err := r.cfg.Placements[name].Ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("placement %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
