package provision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// Kind is how a placement holds its tenants, in the words of the AWS SaaS
// Lens.
type Kind string

// The kinds of placement.
const (
	// Pool: tenants share the placement's tables (Placement.SharedTables),
	// separated by row level security (pgtenant.SharedTables mode).
	Pool Kind = "pool"
	// Bridge: tenants share the placement's database, a schema each
	// (pgtenant.SchemaPerTenant mode).
	Bridge Kind = "bridge"
	// Silo: the placement's database holds one tenant, in a schema of its
	// own as in a bridge (so the same DDL, migrations and pgtenant mode
	// serve it). Create refuses a second live tenant.
	Silo Kind = "silo"
)

// DefaultPlacement is the name of the registry's own database as a
// placement, unless Config.PlacementName says otherwise.
const DefaultPlacement = "default"

// Placement is a database tenants can be placed in, registered once in
// Config.Placements. Its tenants are recorded twice: in the registry (the
// directory: which placement holds each tenant) and in the placement's own
// tenancy.tenants, which the placement's Audit, Delete and migrations read.
// [New] prepares both.
type Placement struct {
	// Name names the placement in the registry and in pgtenant's
	// RouterConfig.Placements: 1 to 63 characters of a-z, 0-9, '_' and
	// '-', starting with a letter. Required, unique.
	Name string
	// Kind is Pool, Bridge or Silo. Required.
	Kind Kind
	// Owner is a pool connected to the placement's database as its owner
	// role (provision.Bootstrap on that server makes the roles and the
	// database). Required.
	Owner *pgxpool.Pool
	// AppRole is the role the placement's pgtenant pool connects as.
	// Defaults to Config.AppRole.
	AppRole string
	// SharedTables are the placement's shared tables, for Kind Pool; see
	// Config.SharedTables. Required for Pool, refused otherwise.
	SharedTables []string
	// SchemaBuilder builds a tenant's schema in this placement's database
	// (a *migrate.Migrator over Owner, say). Defaults to Config.Builder.
	// Required for Bridge and Silo when Config.SchemaBuilder is set: that
	// builder works on the registry's own database.
	SchemaBuilder SchemaBuilder
}

// ErrUnknownPlacement is matched by the error of a call that names a
// placement Config.Placements does not hold.
var ErrUnknownPlacement = errors.New("provision: unknown placement")

// ErrPlacementFull is matched by the error of a Create or Move into a silo
// placement that already holds a live tenant.
var ErrPlacementFull = errors.New("provision: silo placement already holds a tenant")

var placementName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// placed is a placement with the registry of its database.
type placed struct {
	Placement
	reg   *Registry
	local bool // the registry's own database
}

// PlacementInfo describes a placement of the registry.
type PlacementInfo struct {
	// Name is the placement's name.
	Name string
	// Kind is Pool, Bridge or Silo.
	Kind Kind
	// Owner is the pool connected to the placement's database as its
	// owner role (Config.Owner, or Placement.Owner).
	Owner *pgxpool.Pool
	// Registry is the registry of the placement's own database: its
	// Tenants are the tenants placed there (for migrate's fleet
	// operations), its Audit audits that database. For the registry's own
	// placement it is the registry itself.
	Registry *Registry
}

// Placements returns the registry's placements, its own first, then the
// others in the order of Config.Placements.
func (r *Registry) Placements() []PlacementInfo {
	out := make([]PlacementInfo, 0, len(r.order))
	for _, name := range r.order {
		p := r.placements[name]
		out = append(out, PlacementInfo{Name: p.Name, Kind: p.Kind, Owner: p.Owner, Registry: p.reg})
	}
	return out
}

// placement returns the placement called name ("" is the registry's own).
func (r *Registry) placement(name string) (*placed, error) {
	if name == "" {
		name = r.cfg.PlacementName
	}
	if p, ok := r.placements[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w: %q; the registry has %s", ErrUnknownPlacement, name, strings.Join(r.order, ", "))
}

// stored is how the registry records a placement: "" for its own database.
func (r *Registry) stored(p *placed) string {
	if p.local {
		return ""
	}
	return p.Name
}

// checkPlacements validates Config.Placements.
func (c *Config) checkPlacements() error {
	if c.PlacementName == "" {
		c.PlacementName = DefaultPlacement
	}
	if !placementName.MatchString(c.PlacementName) {
		return fmt.Errorf("%w: Config.PlacementName %q: use 1 to 63 of a-z, 0-9, '_' and '-', starting with a letter", ErrInvalidConfig, c.PlacementName)
	}
	seen := map[string]bool{c.PlacementName: true}
	for i, p := range c.Placements {
		at := fmt.Sprintf("Config.Placements[%d] (%q)", i, p.Name)
		switch {
		case !placementName.MatchString(p.Name):
			return fmt.Errorf("%w: %s: the name must be 1 to 63 of a-z, 0-9, '_' and '-', starting with a letter", ErrInvalidConfig, at)
		case seen[p.Name]:
			return fmt.Errorf("%w: %s: the name is used twice (Config.PlacementName is %q)", ErrInvalidConfig, at, c.PlacementName)
		case p.Kind != Pool && p.Kind != Bridge && p.Kind != Silo:
			return fmt.Errorf("%w: %s: Kind %q; use provision.Pool, Bridge or Silo", ErrInvalidConfig, at, p.Kind)
		case p.Owner == nil:
			return fmt.Errorf("%w: %s: Owner is nil; pass a pool connected to the placement's database as its owner role", ErrInvalidConfig, at)
		case p.Kind == Pool && len(p.SharedTables) == 0:
			return fmt.Errorf("%w: %s: a Pool placement needs SharedTables", ErrInvalidConfig, at)
		case p.Kind != Pool && len(p.SharedTables) > 0:
			return fmt.Errorf("%w: %s: SharedTables are for Pool placements; a %s placement has a schema per tenant", ErrInvalidConfig, at, p.Kind)
		case p.Kind != Pool && p.SchemaBuilder == nil && c.SchemaBuilder != nil:
			return fmt.Errorf("%w: %s: Config.SchemaBuilder builds in the registry's own database; give the placement a SchemaBuilder of its own", ErrInvalidConfig, at)
		}
		seen[p.Name] = true
	}
	return nil
}

// openPlacements makes the registry of every placement's database.
func (r *Registry) openPlacements(ctx context.Context) error {
	kind := Bridge
	if r.cfg.Mode == pgtenant.SharedTables {
		kind = Pool
	}
	own := &placed{Placement: Placement{Name: r.cfg.PlacementName, Kind: kind, Owner: r.cfg.Owner, SharedTables: r.cfg.SharedTables, SchemaBuilder: r.cfg.SchemaBuilder}, reg: r, local: true}
	r.placements = map[string]*placed{own.Name: own}
	r.order = []string{own.Name}
	for _, p := range r.cfg.Placements {
		sub := Config{
			Owner: p.Owner, AppRole: cmp.Or(p.AppRole, r.cfg.AppRole), Mode: pgtenant.SchemaPerTenant,
			Builder: r.cfg.Builder, SchemaBuilder: p.SchemaBuilder, Setting: r.cfg.Setting,
			NewID: r.cfg.NewID, DropBatch: r.cfg.DropBatch, Logger: r.cfg.Logger.With("placement", p.Name),
			PlacementName: p.Name,
		}
		if p.SchemaBuilder != nil {
			sub.Builder = nil
		}
		if p.Kind == Pool {
			sub.Mode, sub.SharedTables, sub.Builder, sub.SchemaBuilder = pgtenant.SharedTables, slices.Clone(p.SharedTables), nil, nil
		}
		reg, err := New(ctx, sub)
		if err != nil {
			return fmt.Errorf("placement %q: %w", p.Name, err)
		}
		r.placements[p.Name] = &placed{Placement: p, reg: reg}
		r.order = append(r.order, p.Name)
	}
	return nil
}

// Placement implements pgtenant.Locator: the name of the placement that
// holds t. While t is being cut over to another placement (see
// [Registry.Move]) the error wraps pgtenant.ErrTenantMoving; a tenant that is
// not live wraps ErrTenantNotFound.
func (r *Registry) Placement(ctx context.Context, t tenant.Tenant) (string, error) {
	var placement, step string
	err := r.cfg.Owner.QueryRow(ctx, `SELECT placement, coalesce(move_step, '') FROM tenancy.tenants
		WHERE id = $1 AND status IN ('active', 'suspended', 'provisioning')`, t.ID).Scan(&placement, &step)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: %q", ErrTenantNotFound, t.Slug)
	}
	if err != nil {
		return "", err
	}
	if placement == "" {
		placement = r.cfg.PlacementName
	}
	if step == stepCutover {
		return placement, fmt.Errorf("%w: its writes are frozen for the cut-over", pgtenant.ErrTenantMoving)
	}
	return placement, nil
}

var _ pgtenant.Locator = (*Registry)(nil)

// createIn creates a tenant in another placement's database: the registry
// reserves its names (status provisioning), the placement's registry
// creates it there (schema, DDL, row level security, grants; or the shared
// tables' securing for a pool), and the registry marks it active. On any
// failure both are undone.
func (r *Registry) createIn(ctx context.Context, p *placed, t tenant.Tenant, spec Spec) (Record, error) {
	step := func(name string, err error) error {
		return &StepError{Op: "create", Slug: t.Slug, Step: name, Err: err}
	}
	schema := ""
	if p.Kind != Pool {
		schema = pgtenant.SchemaName(t)
	}
	if err := r.reserve(ctx, p, t, schema, spec.Name); err != nil {
		return Record{}, err
	}
	undo := func(err error) error {
		cctx := context.WithoutCancel(ctx)
		if _, uerr := r.cfg.Owner.Exec(cctx, "DELETE FROM tenancy.tenants WHERE id = $1 AND status = 'provisioning'", t.ID); uerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up the registry row: %w", uerr))
		}
		return err
	}
	if _, err := p.reg.Create(ctx, Spec{Slug: t.Slug, ID: t.ID, Name: spec.Name}); err != nil {
		return Record{}, undo(fmt.Errorf("placement %q: %w", p.Name, err))
	}
	rec, err := r.activate(ctx, t)
	if err != nil {
		if derr := p.reg.Delete(context.WithoutCancel(ctx), t.Slug); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up placement %q: %w", p.Name, derr))
		}
		return Record{}, undo(step("activate", err))
	}
	r.cfg.Logger.InfoContext(ctx, "tenant created", "tenant_id", t.ID, "tenant_slug", t.Slug, "placement", p.Name)
	return rec, nil
}

// reserve registers t in placement p with status provisioning: its names
// taken, a silo's only tenant.
func (r *Registry) reserve(ctx context.Context, p *placed, t tenant.Tenant, schema, name string) error {
	step := func(name string, err error) error {
		return &StepError{Op: "create", Slug: t.Slug, Step: name, Err: err}
	}
	return pgx.BeginFunc(ctx, r.cfg.Owner, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('tenancy:' || $1, 0))", t.Slug); err != nil {
			return step("lock", err)
		}
		if p.Kind == Silo {
			if err := r.checkSilo(ctx, tx, p, t.ID); err != nil {
				return err
			}
		}
		var schemaArg any
		if schema != "" {
			schemaArg = schema
		}
		ct, err := tx.Exec(ctx, `INSERT INTO tenancy.tenants (id, slug, schema_name, name, status, placement)
			VALUES ($1, $2, $3, $4, 'provisioning', $5) ON CONFLICT DO NOTHING`, t.ID, t.Slug, schemaArg, name, r.stored(p))
		if err != nil {
			return step("register", err)
		}
		if ct.RowsAffected() == 0 {
			return fmt.Errorf("%w: slug %q or ID %q", ErrTenantExists, t.Slug, t.ID)
		}
		ct, err = tx.Exec(ctx, namesSQL+" ON CONFLICT DO NOTHING", t.ID, t.Slug)
		if err != nil {
			return step("register", err)
		}
		want := int64(2)
		if t.ID == t.Slug {
			want = 1
		}
		if ct.RowsAffected() != want {
			return fmt.Errorf("%w: slug %q or ID %q is another live tenant's slug or ID", ErrTenantExists, t.Slug, t.ID)
		}
		return nil
	})
}

// checkSilo refuses a silo that holds, or is receiving, a live tenant other
// than id. It serialises on the placement's name.
func (r *Registry) checkSilo(ctx context.Context, tx pgx.Tx, p *placed, id string) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('tenancy-placement:' || $1, 0))", p.Name); err != nil {
		return err
	}
	var other string
	err := tx.QueryRow(ctx, `SELECT slug FROM tenancy.tenants WHERE id <> $2 AND status NOT IN ('deleted', 'failed')
		AND (placement = $1 OR move_to = $1) LIMIT 1`, r.stored(p), id).Scan(&other)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: placement %q holds tenant %q", ErrPlacementFull, p.Name, other)
}

// activate marks a provisioning tenant active and announces it.
func (r *Registry) activate(ctx context.Context, t tenant.Tenant) (Record, error) {
	var rec Record
	err := pgx.BeginFunc(ctx, r.cfg.Owner, func(tx pgx.Tx) error {
		var err error
		rec, err = scanRecord(tx.QueryRow(ctx, "UPDATE tenancy.tenants SET status = 'active', updated_at = now() WHERE id = $1 AND status = 'provisioning' RETURNING "+recordColumns, t.ID))
		if err != nil {
			return err
		}
		return notify(ctx, tx, t)
	})
	return r.named(rec), err
}

// named fills in the name of the registry's own placement.
func (r *Registry) named(rec Record) Record {
	if rec.Placement == "" {
		rec.Placement = r.cfg.PlacementName
	}
	return rec
}
