package provision

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/sqllex"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// Builder fills a new tenant's schema with its tables. It runs inside the
// transaction of [Registry.Create], with the search_path set to the tenant's
// schema, so unqualified names land there and a failure leaves nothing.
type Builder interface {
	BuildTenant(ctx context.Context, tx pgx.Tx, t tenant.Tenant, schema string) error
}

// SchemaBuilder builds a new tenant's schema outside Create's transaction,
// for builders that need connections of their own, such as the migrate
// package's tenant chain (goose runs each migration in its own transaction).
// Create then registers the tenant and creates the schema first, runs the
// builder, confines the tables and marks the tenant active; if anything
// fails, it drops the schema and the registry row again.
type SchemaBuilder interface {
	BuildTenantSchema(ctx context.Context, t tenant.Tenant, schema string) error
}

// BuilderFunc adapts a function to [Builder].
type BuilderFunc func(ctx context.Context, tx pgx.Tx, t tenant.Tenant, schema string) error

// BuildTenant calls f.
func (f BuilderFunc) BuildTenant(ctx context.Context, tx pgx.Tx, t tenant.Tenant, schema string) error {
	return f(ctx, tx, t, schema)
}

// DDL returns a Builder that runs statements, in order, in the tenant's
// schema. Every table they create needs a tenant_id column; Create adds row
// level security, its default and the grants.
//
// With a DDL builder, [Registry.Create] sends everything — registry rows,
// CREATE SCHEMA, the statements, the securing step — in one round trip, each
// statement as a query of its own in one transaction. A string that holds
// more than one statement still works (Create then falls back to one round
// trip per statement); one statement per string is faster.
func DDL(statements ...string) Builder {
	return ddl(slices.Clone(statements))
}

// ddl is the Builder of DDL; Create recognises it and pipelines it.
type ddl []string

// check refuses what cannot be part of Create's transaction or would
// outlive it: transaction control (a COMMIT would make the tenant's first
// half permanent before its tables are confined), session-level SET/RESET
// (it would stay on the owner's pooled connection), SET ROLE (objects owned
// by another role), and COPY from or to the client.
func (d ddl) check() error {
	for i, s := range d {
		for _, st := range sqllex.Split(s) {
			at := func(i int, w string) bool { return i < len(st) && st[i].Is(w) }
			has := func(w string) bool {
				for _, t := range st {
					if t.Is(w) {
						return true
					}
				}
				return false
			}
			switch {
			case sqllex.TxControl(st):
				return fmt.Errorf("DDL statement %d: %s: transaction control is not allowed; Create runs the DDL in its own transaction", i+1, strings.ToUpper(st[0].Text))
			case at(0, "set") && (has("role") || has("authorization")):
				return fmt.Errorf("DDL statement %d: SET ROLE / SESSION AUTHORIZATION is not allowed: the tenant's objects must belong to the owner role", i+1)
			case at(0, "set") && !at(1, "local"), at(0, "reset"):
				return fmt.Errorf("DDL statement %d: a session-level %s is not allowed: it would outlive Create on the owner's pooled connection (use SET LOCAL)", i+1, strings.ToUpper(st[0].Text))
			case at(0, "copy") && (has("stdin") || has("stdout")):
				return fmt.Errorf("DDL statement %d: COPY FROM STDIN / TO STDOUT is not allowed in DDL; load seed rows with INSERT", i+1)
			}
		}
	}
	return nil
}

// BuildTenant runs the statements on tx, one round trip each.
func (d ddl) BuildTenant(ctx context.Context, tx pgx.Tx, _ tenant.Tenant, _ string) error {
	for i, s := range d {
		if _, err := tx.Exec(ctx, s, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("statement %d: %w", i+1, err)
		}
	}
	return nil
}

// Config configures [New]. Zero fields mean their documented defaults.
type Config struct {
	// Owner is a pool connected as the owner role: it creates and drops
	// tenant schemas and owns their tables. Required.
	Owner *pgxpool.Pool
	// AppRole is the role the application's pgtenant pool connects as. It
	// gets USAGE on each tenant schema and DML on its tables (no sequence privileges),
	// nothing more. Required, and it must exist when [New] runs (New returns
	// ErrInvalidConfig otherwise).
	AppRole string
	// Mode is SchemaPerTenant (a schema per tenant) or SharedTables (tenants
	// share SharedTables, separated by RLS only). Defaults to
	// pgtenant.SchemaPerTenant.
	Mode pgtenant.Mode
	// Builder creates a new tenant's tables inside Create's transaction.
	// Defaults to none: an empty schema.
	Builder Builder
	// SchemaBuilder, if set, builds the schema instead, outside the
	// transaction; e.g. a *migrate.Migrator, so a new tenant starts at the
	// latest version of the tenant chain. Set Builder or SchemaBuilder, not
	// both.
	SchemaBuilder SchemaBuilder
	// SharedTables are the schema-qualified tables ("public.notes") that
	// hold every tenant's rows in SharedTables mode. Create applies row level
	// security to them if missing.
	SharedTables []string
	// Setting is the RLS setting pgtenant sets. Defaults to "app.tenant_id".
	Setting string
	// NewID generates the ID of a tenant created without one. Defaults to a
	// random UUID (version 4).
	NewID func() string
	// Purger removes a deleted tenant's keys, e.g. a *redistenant.Client.
	// Defaults to none.
	Purger Purger
	// DropBatch is how many tables one transaction of Delete drops, which
	// keeps a tenant with many tables within max_locks_per_transaction.
	// Defaults to 50.
	DropBatch int
	// BeforeDeleteStep, if set, is called before each step of Delete
	// ("drop tables", "drop schema", "purge keys", "mark deleted"); an error
	// stops Delete there, as a crash would. For observability and tests.
	BeforeDeleteStep func(ctx context.Context, slug, step string) error
	// Logger receives lifecycle events. Defaults to slog.Default().
	Logger *slog.Logger
	// Placements are the other databases a tenant can be placed in (see
	// [Placement], [Spec.Placement] and [Registry.Move]). Defaults to none:
	// every tenant in Owner's database, as a schema (SchemaPerTenant) or in
	// the shared tables (SharedTables).
	Placements []Placement
	// PlacementName names Owner's own database as a placement. Defaults to
	// DefaultPlacement ("default").
	PlacementName string
}

// Purger deletes every key of one tenant; *redistenant.Client implements it.
type Purger interface {
	Purge(ctx context.Context, t tenant.Tenant) (int64, error)
}

var settingPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$`)

func (c *Config) defaults() error {
	if c.Owner == nil {
		return fmt.Errorf("%w: Config.Owner is nil; pass a pool connected as the owner role", ErrInvalidConfig)
	}
	if c.AppRole == "" {
		return fmt.Errorf("%w: Config.AppRole is empty; name the role pgtenant connects as", ErrInvalidConfig)
	}
	if c.Mode != pgtenant.SchemaPerTenant && c.Mode != pgtenant.SharedTables {
		return fmt.Errorf("%w: Config.Mode %v; use pgtenant.SchemaPerTenant or pgtenant.SharedTables", ErrInvalidConfig, c.Mode)
	}
	if c.Mode == pgtenant.SharedTables && len(c.SharedTables) == 0 {
		return fmt.Errorf("%w: Config.SharedTables is empty; SharedTables mode needs the tables tenants share", ErrInvalidConfig)
	}
	if c.Builder != nil && c.SchemaBuilder != nil {
		return fmt.Errorf("%w: set Config.Builder or Config.SchemaBuilder, not both", ErrInvalidConfig)
	}
	if d, ok := c.Builder.(ddl); ok {
		if err := d.check(); err != nil {
			return fmt.Errorf("%w: Config.Builder: %w", ErrInvalidConfig, err)
		}
	}
	if c.Setting == "" {
		c.Setting = pgtenant.DefaultSetting
	}
	if !settingPattern.MatchString(c.Setting) {
		return fmt.Errorf("%w: Config.Setting %q must look like \"prefix.name\"", ErrInvalidConfig, c.Setting)
	}
	if c.NewID == nil {
		c.NewID = newUUID
	}
	if c.DropBatch <= 0 {
		c.DropBatch = 50
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c.checkPlacements()
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
