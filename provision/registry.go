package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/internal/sqllex"
	"github.com/tenancykit/tenancy/tenant"
)

// Status is a tenant's place in its lifecycle:
// provisioning → active ⇄ suspended → deleting → deleted, and
// provisioning → failed.
type Status string

// The statuses.
const (
	StatusProvisioning Status = "provisioning"
	StatusActive       Status = "active"
	StatusSuspended    Status = "suspended"
	StatusDeleting     Status = "deleting"
	StatusDeleted      Status = "deleted"
	StatusFailed       Status = "failed"
)

// Record is a tenant's row in the registry, tenancy.tenants.
type Record struct {
	ID         string
	Slug       string
	SchemaName string // "" in SharedTables mode
	Name       string
	Status     Status
	CreatedAt  time.Time
	UpdatedAt  time.Time
	DeletedAt  *time.Time
	LastError  string
	// Placement names the placement that holds the tenant (see
	// [Placement]); DefaultPlacement, or Config.PlacementName, for the
	// registry's own database.
	Placement string
	// MovingTo names the placement a [Registry.Move] in progress is moving
	// the tenant to; "" when none is.
	MovingTo string
}

// Tenant returns the tenant.Tenant of r.
func (r Record) Tenant() tenant.Tenant { return tenant.Tenant{ID: r.ID, Slug: r.Slug} }

// Registry provisions tenants and keeps their records. It implements
// tenant.Lookup. It is safe for concurrent use.
type Registry struct {
	cfg Config
	// citus: the database has the citus extension; tenant schemas are then
	// created as distributed schemas (see Config).
	citus bool
	// placements by name, the registry's own among them; order lists the
	// names, the registry's own first.
	placements map[string]*placed
	order      []string
}

var _ tenant.Lookup = (*Registry)(nil)

// registryDDL are the versioned steps that create and upgrade the registry.
// Each runs once, in order, recorded in tenancy.registry_version.
var registryDDL = []string{
	1: `CREATE TABLE tenancy.tenants (
		id          text PRIMARY KEY,
		slug        text NOT NULL,
		schema_name text,
		name        text NOT NULL DEFAULT '',
		status      text NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'deleting', 'deleted', 'failed')),
		created_at  timestamptz NOT NULL DEFAULT now(),
		updated_at  timestamptz NOT NULL DEFAULT now(),
		deleted_at  timestamptz,
		last_error  text
	);
	CREATE UNIQUE INDEX tenants_live_slug ON tenancy.tenants (slug) WHERE status <> 'deleted';
	CREATE UNIQUE INDEX tenants_live_schema ON tenancy.tenants (schema_name) WHERE status <> 'deleted';
	CREATE INDEX tenants_status_slug ON tenancy.tenants (status, slug);`,
	// One namespace of names: every live tenant's ID and slug, all distinct,
	// enforced by the primary key, so a name reaches at most one tenant. A
	// tenant's rows go when it is marked deleted (its names may be reused)
	// or when its row is removed.
	2: `CREATE TABLE tenancy.tenant_names (
		name      text PRIMARY KEY,
		tenant_id text NOT NULL REFERENCES tenancy.tenants (id) ON DELETE CASCADE
	);
	CREATE INDEX tenant_names_tenant ON tenancy.tenant_names (tenant_id);
	INSERT INTO tenancy.tenant_names (name, tenant_id)
		SELECT id, id FROM tenancy.tenants WHERE status <> 'deleted' ORDER BY created_at ON CONFLICT DO NOTHING;
	INSERT INTO tenancy.tenant_names (name, tenant_id)
		SELECT slug, id FROM tenancy.tenants WHERE status <> 'deleted' ORDER BY created_at ON CONFLICT DO NOTHING;`,
	// The securing step as functions in the server (secure.go).
	3: secureFunctions,
	// The tenant policy recognised by its meaning (secure.go).
	4: securePolicies,
	// Placements (placement.go): where each tenant is ('' for this
	// database), and a move in progress (move.go). The fence a move puts
	// on a tenant's old tables calls tenancy.refuse_moved.
	5: `ALTER TABLE tenancy.tenants ADD COLUMN placement text NOT NULL DEFAULT '',
		ADD COLUMN move_to text, ADD COLUMN move_step text, ADD COLUMN move_from text;
	CREATE FUNCTION tenancy.refuse_moved() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fence$
BEGIN
	RAISE EXCEPTION USING ERRCODE = 'TN010',
		MESSAGE = format('tenant %s has moved to placement %s: this database no longer takes its writes', TG_ARGV[0], TG_ARGV[1]),
		HINT = 'locate the tenant again (pgtenant.Router does) and write there';
END $fence$;`,
}

// citusSQL reports whether the database has the citus extension.
const citusSQL = "SELECT " + rls.CitusInstalled

// shardingSQL switches Citus's schema-based sharding on or off for the rest
// of the transaction: a schema created while it is on is a distributed
// schema, whose tables Citus keeps together on one worker node.
const shardingSQL = "SELECT set_config('citus.enable_schema_based_sharding', $1, true)"

// registryLock serialises registry upgrades across processes.
const registryLock = rls.SchemaLock

// New returns a Registry, creating or upgrading its tables in schema tenancy
// if needed.
func New(ctx context.Context, cfg Config) (*Registry, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &Registry{cfg: cfg}
	var appRole bool
	if err := cfg.Owner.QueryRow(ctx, citusSQL+", EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", cfg.AppRole).Scan(&r.citus, &appRole); err != nil {
		return nil, fmt.Errorf("provision: look for Citus and the app role: %w", err)
	}
	if !appRole {
		// Every Create would fail at its GRANT, after the schema was made.
		return nil, fmt.Errorf("%w: Config.AppRole %q is not a role on this server; create it first (Bootstrap does) or name the role pgtenant connects as", ErrInvalidConfig, cfg.AppRole)
	}
	if err := r.upgrade(ctx); err != nil {
		return nil, fmt.Errorf("provision: prepare registry: %w", err)
	}
	if err := r.openPlacements(ctx); err != nil {
		return nil, fmt.Errorf("provision: prepare placements: %w", err)
	}
	return r, nil
}

func (r *Registry) upgrade(ctx context.Context) error {
	return pgx.BeginFunc(ctx, r.cfg.Owner, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", registryLock); err != nil {
			return err
		}
		if r.citus {
			// The registry stays on the coordinator, whatever the role or
			// session says about schema-based sharding.
			if _, err := tx.Exec(ctx, shardingSQL, "off"); err != nil {
				return err
			}
		}
		// One statement per query string, as Citus needs for DDL.
		execEach := func(sql string) error { return rls.ExecEach(ctx, tx.Conn().PgConn(), sqllex.Statements(sql)) }
		if err := execEach(`CREATE SCHEMA IF NOT EXISTS tenancy;
			CREATE TABLE IF NOT EXISTS tenancy.registry_version (version int NOT NULL);
			REVOKE ALL ON SCHEMA tenancy FROM PUBLIC`); err != nil {
			return err
		}
		var version int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM tenancy.registry_version").Scan(&version); err != nil {
			return err
		}
		for v := version + 1; v < len(registryDDL); v++ {
			if err := execEach(registryDDL[v]); err != nil {
				return fmt.Errorf("registry version %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO tenancy.registry_version VALUES ($1)", v); err != nil {
				return err
			}
		}
		return nil
	})
}

const recordColumns = "id, slug, coalesce(schema_name, ''), name, status, created_at, updated_at, deleted_at, coalesce(last_error, ''), placement, coalesce(move_to, '')"

func scanRecord(row pgx.Row) (Record, error) {
	var rec Record
	var status string
	err := row.Scan(&rec.ID, &rec.Slug, &rec.SchemaName, &rec.Name, &status, &rec.CreatedAt, &rec.UpdatedAt, &rec.DeletedAt, &rec.LastError, &rec.Placement, &rec.MovingTo)
	rec.Status = Status(status)
	return rec, err
}

// Get returns the live (not deleted) tenant with slug.
func (r *Registry) Get(ctx context.Context, slug string) (Record, error) {
	rec, err := scanRecord(r.cfg.Owner.QueryRow(ctx,
		"SELECT "+recordColumns+" FROM tenancy.tenants WHERE slug = $1 AND status <> 'deleted'", slug))
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, fmt.Errorf("%w: %q", ErrTenantNotFound, slug)
	}
	return r.named(rec), err
}

// ListOptions filters and pages [Registry.List].
type ListOptions struct {
	// Status keeps only tenants in this status. Defaults to every status
	// but deleted.
	Status Status
	// After is the slug the previous page ended with. Defaults to the start.
	After string
	// Limit is the page size. Defaults to 100; at most 1000.
	Limit int
}

// List returns tenants ordered by slug, one page at a time: pass the last
// slug of a page as After to get the next. The page is shorter than Limit
// only at the end.
func (r *Registry) List(ctx context.Context, opts ListOptions) ([]Record, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var rows pgx.Rows
	if opts.Status == "" {
		rows, _ = r.cfg.Owner.Query(ctx, "SELECT "+recordColumns+" FROM tenancy.tenants WHERE status <> 'deleted' AND slug > $1 ORDER BY slug LIMIT $2", opts.After, limit)
	} else {
		rows, _ = r.cfg.Owner.Query(ctx, "SELECT "+recordColumns+" FROM tenancy.tenants WHERE status = $1 AND slug > $2 ORDER BY slug LIMIT $3", string(opts.Status), opts.After, limit)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) {
		rec, err := scanRecord(row)
		return r.named(rec), err
	})
}

// Suspend stops serving a tenant: [Registry.LookupTenant] answers
// ErrTenantSuspended (403 through the middleware). Its data stays.
func (r *Registry) Suspend(ctx context.Context, slug string) error {
	return r.transition(ctx, slug, StatusActive, StatusSuspended)
}

// Resume serves a suspended tenant again.
func (r *Registry) Resume(ctx context.Context, slug string) error {
	return r.transition(ctx, slug, StatusSuspended, StatusActive)
}

// Update changes what may change of a live tenant: its display name. The
// slug names the tenant's schema and the ID is in its rows, so neither
// changes. The change is announced on [WatchChannel] in the statement that
// makes it, like every status change, so caches that hold the tenant drop it.
type Update struct {
	// Name, if not nil, is the new display name; see [Spec.Name].
	Name *string
}

// Update applies u to the live tenant with slug and returns its record.
func (r *Registry) Update(ctx context.Context, slug string, u Update) (Record, error) {
	if u.Name == nil {
		return r.Get(ctx, slug)
	}
	if err := validateName(*u.Name); err != nil {
		return Record{}, err
	}
	rec, err := scanRecord(r.cfg.Owner.QueryRow(ctx, `WITH u AS (
			UPDATE tenancy.tenants SET name = $2, updated_at = now() WHERE slug = $1 AND status <> 'deleted' RETURNING *),
		n AS (SELECT pg_notify($3, u.id || ' ' || u.slug) FROM u)
		SELECT `+recordColumns+` FROM u, (SELECT count(*) FROM n) AS sent`, slug, *u.Name, WatchChannel))
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, fmt.Errorf("%w: %q", ErrTenantNotFound, slug)
	}
	if err != nil {
		return Record{}, err
	}
	r.cfg.Logger.InfoContext(ctx, "tenant updated", "tenant_id", rec.ID, "tenant_slug", slug)
	return r.named(rec), nil
}

// MaxNameLen is the longest display name, in bytes.
const MaxNameLen = 200

// validateName accepts a display name PostgreSQL can store as text.
func validateName(name string) error {
	switch {
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("%w: holds a NUL character, which text cannot store", ErrInvalidName)
	}
	return nil
}

func (r *Registry) transition(ctx context.Context, slug string, from, to Status) error {
	// The change and its notification commit together (one statement).
	ct, err := r.cfg.Owner.Exec(ctx, `WITH u AS (
			UPDATE tenancy.tenants SET status = $3, updated_at = now() WHERE slug = $1 AND status = $2 RETURNING id, slug)
		SELECT pg_notify($4, u.id || ' ' || u.slug) FROM u`,
		slug, string(from), string(to), WatchChannel)
	if err != nil {
		return err
	}
	if ct.RowsAffected() == 1 {
		r.cfg.Logger.InfoContext(ctx, "tenant "+string(to), "tenant_slug", slug)
		return nil
	}
	rec, err := r.Get(ctx, slug)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: tenant %q is %s, not %s", ErrInvalidTransition, slug, rec.Status, from)
}

// LookupTenant implements tenant.Lookup: key is a slug or an ID. IDs and
// slugs of live tenants share one namespace (no live tenant's ID is another's
// slug), so a key names at most one tenant. Only active tenants are returned; a suspended one gives ErrTenantSuspended and any
// other ErrTenantNotFound. Put a tenant.Cache in front of it.
func (r *Registry) LookupTenant(ctx context.Context, key string) (tenant.Tenant, error) {
	var t tenant.Tenant
	var status string
	// tenant_names holds each live name once: at most one row matches.
	err := r.cfg.Owner.QueryRow(ctx, `SELECT t.id, t.slug, t.status FROM tenancy.tenant_names n
		JOIN tenancy.tenants t ON t.id = n.tenant_id
		WHERE n.name = $1 AND t.status IN ('active', 'suspended')`, key).Scan(&t.ID, &t.Slug, &status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return tenant.Tenant{}, ErrTenantNotFound
	case err != nil:
		return tenant.Tenant{}, err
	case status == string(StatusSuspended):
		return tenant.Tenant{}, ErrTenantSuspended
	}
	return t, nil
}

// Tenants returns every active and suspended tenant placed in the
// registry's own database, for the migrate package's fleet operations; the
// Registry of each of [Registry.Placements] lists the tenants of its
// database.
func (r *Registry) Tenants(ctx context.Context) ([]tenant.Tenant, error) {
	rows, _ := r.cfg.Owner.Query(ctx, "SELECT id, slug FROM tenancy.tenants WHERE status IN ('active', 'suspended') AND placement = '' ORDER BY slug")
	return pgx.CollectRows(rows, pgx.RowToStructByPos[tenant.Tenant])
}
