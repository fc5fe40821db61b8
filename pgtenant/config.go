package pgtenant

import (
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/tenant"
)

// Mode selects how tenants are kept apart in the database.
type Mode int

const (
	// SchemaPerTenant gives each tenant its own schema ([SchemaName]) and
	// puts it first on the search_path of every statement, with the RLS
	// setting as a second layer. The default.
	SchemaPerTenant Mode = iota
	// SharedTables (the "pool" model) keeps every tenant in the same tables:
	// the search_path is left alone and only the RLS setting separates
	// tenants.
	SharedTables
)

func (m Mode) String() string {
	switch m {
	case SchemaPerTenant:
		return "SchemaPerTenant"
	case SharedTables:
		return "SharedTables"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// CitusMode says whether a [Pool] carries the tenant as a Citus cluster
// needs it.
//
// On Citus, a statement on a distributed table runs on a worker node in a
// transaction the coordinator opens there; a setting made with set_config
// stays on the coordinator, so row level security on the worker would see
// no tenant (reads return no rows, writes are refused). In Citus mode every
// statement therefore runs in an explicit transaction block that also sets
// the tenant with SET LOCAL, which Citus forwards to the workers (with
// citus.propagate_set_commands = 'local', set in the same block): the pool's
// statements and batches become BEGIN, scope, the SET LOCALs, the
// statement(s) and COMMIT, still in one write and one round trip; a
// transaction's BEGIN carries the SET LOCALs. A block that failed is rolled
// back before its connection returns to the pool. The tenant ID travels as
// a quoted literal there (SET takes no parameters); [tenant.ValidateID]
// allows only letters, digits, '_' and '-' in it.
type CitusMode int

const (
	// CitusAuto turns Citus mode on when the citus extension is installed
	// in the database of the pool's first connection.
	CitusAuto CitusMode = iota
	// CitusOn always uses Citus mode.
	CitusOn
	// CitusOff never does: on a Citus cluster, statements on distributed
	// tables then see no tenant on the workers and fail closed.
	CitusOff
)

func (m CitusMode) String() string {
	switch m {
	case CitusAuto:
		return "CitusAuto"
	case CitusOn:
		return "CitusOn"
	case CitusOff:
		return "CitusOff"
	}
	return fmt.Sprintf("CitusMode(%d)", int(m))
}

// Config configures [New]. Zero fields mean their documented defaults.
type Config struct {
	// PoolConfig is the pgx pool configuration, as for pgxpool.NewWithConfig.
	// New works on a copy; the hooks in it still run (AfterConnect first,
	// then the SDK's own). Required.
	PoolConfig *pgxpool.Config
	// Mode selects schema-per-tenant or shared tables. Defaults to
	// SchemaPerTenant.
	Mode Mode
	// SharedSchemas follow the tenant's schema on the search_path, in order.
	// Ignored in SharedTables mode. A nil slice defaults to ["public"]; an
	// empty non-nil slice means none.
	SharedSchemas []string
	// Setting is the custom setting that carries the tenant ID to RLS
	// policies, read with current_setting('<Setting>', true). It must have
	// the form "prefix.name". Defaults to "app.tenant_id".
	Setting string
	// AllowPrivilegedRole lets New accept a superuser or a role with
	// BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION. Such a role ignores
	// RLS or can reach past it; use it only when isolation by schema is all
	// you want. It does not allow role or database settings the pool relies
	// on (ErrRoleSetting). Defaults to false.
	AllowPrivilegedRole bool
	// Citus says whether the pool runs on a Citus cluster, where the tenant
	// setting must reach the worker nodes. Defaults to CitusAuto: on when
	// the citus extension is installed in the connected database. See
	// [CitusMode] for what changes.
	Citus CitusMode
	// AllowDDL lets statements on the statement path, in transactions and
	// through OpenDB create, alter, drop, comment on and grant privileges
	// on objects (CREATE TABLE, ALTER TABLE, GRANT ... ON ..., SELECT ...
	// INTO). Defaults to false: the tenants' pool runs no DDL, and such a
	// statement is refused before any I/O with a *[SessionStateError]; DDL
	// belongs to the schema owner (provision, migrate). Statements whose
	// effect outlives the session (ALTER ROLE, ALTER DATABASE, ALTER SYSTEM,
	// CREATE/DROP ROLE, GRANT of a role, ALTER DEFAULT PRIVILEGES, SECURITY
	// LABEL, REASSIGN/DROP OWNED) and temporary objects that outlive their
	// transaction stay refused whatever it says. Allowed DDL is verified by
	// the server-side backstop like every statement the lexer cannot bound.
	AllowDDL bool
	// StatementCacheCapacity bounds the statements each connection keeps
	// prepared. A statement is prepared per (tenant schema, SQL), so size it
	// for distinct statements × tenants active at once; the least recently
	// used is deallocated beyond it. Defaults to 1024.
	StatementCacheCapacity int
	// TenantLimits bounds the connections each tenant may hold at once and
	// the time each of its statements may run, with tiers per tenant; see
	// [TenantLimits]. Nil (the default) bounds nothing.
	TenantLimits *TenantLimits
	// Observer is told of every connection handed to a tenant and of its
	// return (pool wait time, connections held); see [Observer]. Nil means
	// none.
	Observer Observer
	// TagSessions names the tenant on the server session while it runs the
	// tenant's statements: the scope statement also sets application_name
	// to [SessionTag] (set_config(..., true): for the transaction; for the
	// session on a Conn of [Pool.Acquire], until its release), so
	// pg_stat_activity, log_line_prefix's %a and pg_stat_statements' joins
	// show which tenant a backend serves. No extra round trip; the server
	// reports the change to the client twice per statement (ParameterStatus
	// messages). Defaults to false.
	TagSessions bool
}

// DefaultSetting is the setting name used when Config.Setting is empty.
const DefaultSetting = "app.tenant_id"

var settingPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$`)

type settings struct {
	mode     Mode
	shared   string // quoted shared schemas, ", "-prefixed
	setting  string
	capacity int
	allow    bool
	citus    CitusMode
	allowDDL bool
	limited  bool // TenantLimits set
	tag      bool
}

func (c Config) settings() (settings, error) {
	s := settings{mode: c.Mode, setting: c.Setting, capacity: c.StatementCacheCapacity, allow: c.AllowPrivilegedRole, citus: c.Citus, allowDDL: c.AllowDDL,
		limited: c.TenantLimits != nil, tag: c.TagSessions}
	if c.TenantLimits != nil {
		if err := c.TenantLimits.validate(); err != nil {
			return s, err
		}
	}
	if c.PoolConfig == nil {
		return s, fmt.Errorf("%w: Config.PoolConfig is nil; build one with pgxpool.ParseConfig", ErrInvalidConfig)
	}
	if s.mode != SchemaPerTenant && s.mode != SharedTables {
		return s, fmt.Errorf("%w: Config.Mode is %v; use SchemaPerTenant or SharedTables", ErrInvalidConfig, s.mode)
	}
	if s.citus < CitusAuto || s.citus > CitusOff {
		return s, fmt.Errorf("%w: Config.Citus is %v; use CitusAuto, CitusOn or CitusOff", ErrInvalidConfig, s.citus)
	}
	if s.setting == "" {
		s.setting = DefaultSetting
	}
	if !settingPattern.MatchString(s.setting) {
		return s, fmt.Errorf("%w: Config.Setting %q must look like \"prefix.name\" (lowercase letters, digits, _)", ErrInvalidConfig, s.setting)
	}
	if s.capacity == 0 {
		s.capacity = 1024
	}
	if s.capacity < 1 {
		return s, fmt.Errorf("%w: Config.StatementCacheCapacity is %d; use a positive number or 0 for the default", ErrInvalidConfig, s.capacity)
	}
	shared := c.SharedSchemas
	if shared == nil {
		shared = []string{"public"}
	}
	for _, name := range shared {
		if name == "" || len(name) > 63 {
			return s, fmt.Errorf("%w: Config.SharedSchemas has %q; schema names are 1-63 bytes", ErrInvalidConfig, name)
		}
		s.shared += ", " + pgx.Identifier{name}.Sanitize()
	}
	return s, nil
}

// SchemaName returns the schema that holds t's tables in SchemaPerTenant
// mode: "tenant_" followed by the slug. Slug validation keeps it within
// PostgreSQL's 63-byte identifier limit. Provisioning and migrations use the
// same rule.
func SchemaName(t tenant.Tenant) string { return "tenant_" + t.Slug }
