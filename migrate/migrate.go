package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// TenantSource lists the tenants whose schemas the fleet operations
// ([Migrator.UpAll], [Migrator.Status], [Migrator.Refresh]) work on; it is
// passed to each call, so a Migrator and the registry that lists the fleet
// (and uses the Migrator as its SchemaBuilder) can be built in either order.
// *provision.Registry implements it.
type TenantSource interface {
	Tenants(ctx context.Context) ([]tenant.Tenant, error)
}

// TenantSourceFunc adapts a function to [TenantSource].
type TenantSourceFunc func(ctx context.Context) ([]tenant.Tenant, error)

// Tenants calls f.
func (f TenantSourceFunc) Tenants(ctx context.Context) ([]tenant.Tenant, error) { return f(ctx) }

// Config configures [New]. Zero fields mean their documented defaults.
type Config struct {
	// ConnConfig connects as the owner role, which owns the tenant schemas.
	// Every worker opens its own connection from it. Required.
	ConnConfig *pgx.ConnConfig
	// Shared is the migration set of the shared schema (goose SQL files,
	// e.g. an embed.FS). Defaults to none.
	Shared fs.FS
	// Tenant is the migration set applied to every tenant schema. Defaults
	// to none.
	Tenant fs.FS
	// AppRole is granted DML on the tables a tenant migration creates, which
	// also get the tenant policy. Required with Tenant.
	AppRole string
	// Setting is the RLS setting pgtenant uses. Defaults to "app.tenant_id".
	Setting string
	// Concurrency is how many tenant schemas are migrated at once. Defaults
	// to 2; at most 64.
	Concurrency int
	// StopOnError stops UpAll at the first failing tenant. Defaults to
	// false: the fleet continues and the report names every failure.
	StopOnError bool
	// Progress, if set, is called after each tenant of UpAll, from one
	// goroutine at a time.
	Progress func(Progress)
	// Logger receives progress and failures. Defaults to slog.Default().
	Logger *slog.Logger
	// ProviderOptions are passed to every goose provider (e.g.
	// goose.WithGoMigrations). The table name and locker are set per schema.
	ProviderOptions []goose.ProviderOption
}

// Migrator runs the shared and tenant migration chains.
type Migrator struct {
	cfg         Config
	latest      int64
	sources     []int64     // tenant chain versions, ascending
	files       []chainFile // the same, as the fleet runner sees them
	summaryOnce sync.Once
	// forms are the tenant policy's forms (rls.FormsSQL) of the last
	// tenant probed, for the securing steps of the others.
	forms      atomic.Pointer[[]string]
	summaryErr error
	// citus: the database has the citus extension (learnt by status, before
	// any tenant runs); see runFast and gooseTableFirst.
	citus atomic.Bool
}

var settingPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$`)

// New returns a Migrator. It reads the migration sets but does not connect.
func New(cfg Config) (*Migrator, error) {
	if cfg.ConnConfig == nil {
		return nil, fmt.Errorf("%w: Config.ConnConfig is nil; parse the owner role's URL with pgx.ParseConfig", ErrInvalidConfig)
	}
	if cfg.Tenant != nil && cfg.AppRole == "" {
		return nil, fmt.Errorf("%w: Config.AppRole is empty; tables a tenant migration creates are granted to it", ErrInvalidConfig)
	}
	if cfg.Setting == "" {
		cfg.Setting = pgtenant.DefaultSetting
	}
	if !settingPattern.MatchString(cfg.Setting) {
		return nil, fmt.Errorf("%w: Config.Setting %q must look like \"prefix.name\"", ErrInvalidConfig, cfg.Setting)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 2
	}
	cfg.Concurrency = min(cfg.Concurrency, 64)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Migrator{cfg: cfg}
	if cfg.Tenant != nil {
		// A provider is needed only to list the sources; it does not connect.
		db := stdlib.OpenDB(*cfg.ConnConfig)
		defer db.Close()
		p, err := m.provider(db, cfg.Tenant, "goose_db_version")
		if err != nil {
			return nil, fmt.Errorf("migrate: tenant migrations: %w", err)
		}
		for _, s := range p.ListSources() {
			m.sources = append(m.sources, s.Version)
			m.latest = max(m.latest, s.Version)
			f := chainFile{version: s.Version, up: upFile{why: "Go migration"}}
			if s.Type == goose.TypeSQL {
				if f.up, err = readUp(cfg.Tenant, s.Path); err != nil {
					return nil, fmt.Errorf("migrate: tenant migrations: %w", err)
				}
			}
			m.files = append(m.files, f)
		}
	}
	return m, nil
}

// Latest returns the highest version of the tenant chain.
func (m *Migrator) Latest() int64 { return m.latest }

func (m *Migrator) provider(db *sql.DB, fsys fs.FS, table string) (*goose.Provider, error) {
	opts := append([]goose.ProviderOption{
		goose.WithTableName(table),
		goose.WithDisableGlobalRegistry(true),
	}, m.cfg.ProviderOptions...)
	return goose.NewProvider(goose.DialectPostgres, db, fsys, opts...)
}

// lockID gives each schema its own advisory lock, so two deploys never apply
// one schema's migration twice, yet different schemas never wait on each
// other (goose's default is one lock per database).
func lockID(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("tenancy-migrate:" + name))
	return int64(h.Sum64() & 0x7fffffffffffffff)
}

// lockSchema takes the schema's advisory lock on the worker's connection for
// the whole run: goose's migrations and the securing of new tables. It polls
// rather than waits in the server: a session waiting for an advisory lock
// holds a snapshot, and CREATE INDEX CONCURRENTLY in the lock holder waits
// for every older snapshot — a deadlock.
func lockSchema(ctx context.Context, db *sql.DB, name string) (unlock func(), err error) {
	id := lockID(name)
	var ok bool
	if err := db.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", id).Scan(&ok); err != nil {
		return nil, err
	}
	if !ok {
		if err := waitLock(ctx, db, id); err != nil {
			return nil, err
		}
	}
	return func() {
		_, _ = db.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", id)
	}, nil
}

const lockPoll = 25 * time.Millisecond

// waitLock polls for lock id until it is taken or ctx ends; see lockSchema.
func waitLock(ctx context.Context, db *sql.DB, id int64) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lockPoll):
		}
		var ok bool
		if err := db.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", id).Scan(&ok); err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
}

// worker is one connection that migrates schema after schema.
type worker struct {
	db *sql.DB
}

func (m *Migrator) newWorker() *worker {
	db := stdlib.OpenDB(*m.cfg.ConnConfig)
	// One connection: the search_path set for a schema is the one its
	// migrations run with. (Go migrations that need their own connection
	// outside a transaction are refused by goose in this set-up.)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	return &worker{db: db}
}

func (w *worker) close() { _ = w.db.Close() }

// UpShared applies the shared chain, its version table public.goose_db_version.
func (m *Migrator) UpShared(ctx context.Context) ([]*goose.MigrationResult, error) {
	if m.cfg.Shared == nil {
		return nil, nil
	}
	w := m.newWorker()
	defer w.close()
	unlock, err := lockSchema(ctx, w.db, "public")
	if err != nil {
		return nil, fmt.Errorf("migrate: shared migrations: %w", err)
	}
	defer unlock()
	p, err := m.provider(w.db, m.cfg.Shared, "public.goose_db_version")
	if err != nil {
		return nil, fmt.Errorf("migrate: shared migrations: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return res, &MigrationError{Version: failedVersion(err), Err: err}
	}
	return res, nil
}

// TenantResult is what migrating one tenant did.
type TenantResult struct {
	Tenant   tenant.Tenant
	Schema   string
	From, To int64
	Applied  int
	Duration time.Duration
	Err      error
	// ViaGoose is true when goose applied the migrations, one per
	// transaction (UpTenant, UpTo, DownTo, and the tenants UpAll hands to
	// goose), and false when UpAll's fleet runner applied them all in one
	// transaction.
	ViaGoose bool
}

// UpTenant applies the tenant chain to t's schema, up to the latest version.
func (m *Migrator) UpTenant(ctx context.Context, t tenant.Tenant) TenantResult {
	w := m.newWorker()
	defer w.close()
	return m.migrateTenant(ctx, w, t, -1, false, func(p *goose.Provider) ([]*goose.MigrationResult, error) { return p.Up(ctx) })
}

// UpTo applies t's tenant chain up to version.
func (m *Migrator) UpTo(ctx context.Context, t tenant.Tenant, version int64) TenantResult {
	w := m.newWorker()
	defer w.close()
	return m.migrateTenant(ctx, w, t, -1, false, func(p *goose.Provider) ([]*goose.MigrationResult, error) { return p.UpTo(ctx, version) })
}

// DownTo rolls t's tenant chain back to version.
func (m *Migrator) DownTo(ctx context.Context, t tenant.Tenant, version int64) TenantResult {
	w := m.newWorker()
	defer w.close()
	return m.migrateTenant(ctx, w, t, -1, true, func(p *goose.Provider) ([]*goose.MigrationResult, error) { return p.DownTo(ctx, version) })
}

// migrateTenant migrates t's schema on w. from is the version Status read,
// or -1 to ask goose.
func (m *Migrator) migrateTenant(ctx context.Context, w *worker, t tenant.Tenant, from int64, down bool, run func(*goose.Provider) ([]*goose.MigrationResult, error)) TenantResult {
	start := time.Now()
	res := TenantResult{Tenant: t, Schema: pgtenant.SchemaName(t), ViaGoose: true}
	fail := func(version int64, err error) TenantResult {
		res.Err = &MigrationError{Tenant: t, Version: version, Err: citusSerial(err)}
		res.Duration = time.Since(start)
		return res
	}
	if err := t.Validate(); err != nil {
		return fail(0, err)
	}
	if m.cfg.Tenant == nil {
		return fail(0, ErrNoTenantChain)
	}
	schema := pgx.Identifier{res.Schema}.Sanitize()
	// The worker's only connection gets the tenant's search_path and RLS
	// setting for the whole run (unqualified names land in the schema, and
	// seed rows pass the tenant's policy), and tries the schema's lock, all
	// in one round trip. Both settings are overwritten for the next schema.
	id := lockID(res.Schema)
	var exists, locked bool
	if err := w.db.QueryRowContext(ctx, `SELECT to_regnamespace($1) IS NOT NULL, set_config('search_path', $1 || ', public', false),
			set_config($2, $3, false), CASE WHEN to_regnamespace($1) IS NOT NULL THEN pg_try_advisory_lock($4) ELSE false END`,
		schema, m.cfg.Setting, t.ID, id).Scan(&exists, new(string), new(string), &locked); err != nil {
		return fail(0, err)
	}
	if !exists {
		return fail(0, fmt.Errorf("%w: %s; provision the tenant first", ErrSchemaMissing, schema))
	}
	if !locked {
		if err := waitLock(ctx, w.db, id); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w: %s, by another migration (%w)", ErrSchemaLocked, schema, err)
			}
			return fail(0, err)
		}
	}
	if err := m.gooseTableFirst(ctx, w.db, res.Schema); err != nil {
		_ = unlockAndRecord(ctx, w.db, id, res.Schema, -1)
		return fail(0, err)
	}
	p, err := m.provider(w.db, m.cfg.Tenant, res.Schema+".goose_db_version")
	if err != nil {
		_ = unlockAndRecord(ctx, w.db, id, res.Schema, -1)
		return fail(0, err)
	}
	res.From = from
	if from < 0 {
		if res.From, err = p.GetDBVersion(ctx); err != nil && !errors.Is(err, goose.ErrVersionNotFound) {
			_ = unlockAndRecord(ctx, w.db, id, res.Schema, -1)
			return fail(0, err)
		}
	}
	applied, runErr := run(p)
	res.Applied = len(applied)
	res.To = res.From
	if down || runErr != nil {
		res.To, _ = p.GetDBVersion(context.WithoutCancel(ctx))
	} else {
		for _, a := range applied {
			res.To = max(res.To, a.Source.Version)
		}
	}
	// Tables the migrations created get the tenant policy and grants, even
	// when a later migration failed: a new table is never left readable.
	secureErr := m.secure(ctx, w, t, res.Schema)
	// Unlock, and keep the fleet's version summary current (see Status).
	_ = unlockAndRecord(ctx, w.db, id, res.Schema, res.To)
	if secureErr != nil && runErr == nil {
		return fail(res.To, secureErr)
	}
	if runErr != nil {
		return fail(failedVersion(runErr), runErr)
	}
	res.Duration = time.Since(start)
	return res
}

// unlockAndRecord releases the schema's lock and records its version in the
// summary in one round trip (version < 0 records nothing). The summary is a
// cache of the goose tables, so its write need not wait for the disk.
func unlockAndRecord(ctx context.Context, db *sql.DB, id int64, schemaName string, version int64) error {
	ctx = context.WithoutCancel(ctx)
	if version < 0 {
		_, err := db.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", id)
		return err
	}
	_, err := db.ExecContext(ctx, `WITH async AS (SELECT set_config('synchronous_commit', 'off', true)),
			unlocked AS (SELECT pg_advisory_unlock($1))
		INSERT INTO tenancy.migrate_versions (schema_name, schema_oid, version)
		SELECT $2, to_regnamespace(quote_ident($2)), $3 FROM async, unlocked
		ON CONFLICT (schema_name) DO UPDATE SET schema_oid = excluded.schema_oid, version = excluded.version, updated_at = now()`,
		id, schemaName, version)
	if err != nil { // the summary table is made by Status; unlock anyway
		_, err = db.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", id)
	}
	return err
}

// secure confines the schema's tables that lack the tenant policy. A table
// without tenant_id is left without grants (the app role cannot read it) and
// named in the error.
func (m *Migrator) secure(ctx context.Context, w *worker, t tenant.Tenant, schema string) error {
	return w.raw(ctx, func(pc *pgx.Conn) error {
		if err := m.ensureSummary(ctx, pc); err != nil {
			return err
		}
		forms, err := m.formsFor(ctx, pc, t)
		if err != nil {
			return err
		}
		rels, err := rls.Relations(ctx, pc, schema, m.cfg.Setting, m.cfg.AppRole, t.ID, forms)
		if err != nil {
			return err
		}
		if !rls.Pending(rels) {
			return nil // no new table: nothing to confine or grant
		}
		plan := rls.Plan(schema, rels, m.cfg.Setting, m.cfg.AppRole, t.ID)
		// Nothing confined or granted on these: the new tables stay unusable
		// for the app role, and the tenant's migration reports why.
		if len(plan.Serial) > 0 {
			return refusal(rls.CodeSerial, plan.Serial)
		}
		if len(plan.Twins) > 0 {
			return refusal(rls.CodeTwin, plan.Twins)
		}
		// One round trip, one implicit transaction, one statement per query.
		// Tables with tenant_id are confined even when others are refused.
		if err := rls.ExecEach(ctx, pc.PgConn(), plan.Stmts); err != nil {
			return err
		}
		if len(plan.Missing) > 0 {
			return refusal(rls.CodeMissing, plan.Missing)
		}
		if len(plan.Foreign) > 0 {
			return refusal(rls.CodeForeignPolicy, plan.Foreign)
		}
		return nil
	})
}

// failedVersion digs the failed migration's version out of a goose error.
func failedVersion(err error) int64 {
	var pe *goose.PartialError
	if errors.As(err, &pe) && pe.Failed != nil && pe.Failed.Source != nil {
		return pe.Failed.Source.Version
	}
	return 0
}

// BuildTenantSchema applies the tenant chain to a new tenant's schema; it
// makes a *Migrator a provision.SchemaBuilder, so a tenant provision creates
// starts at the latest version.
func (m *Migrator) BuildTenantSchema(ctx context.Context, t tenant.Tenant, _ string) error {
	return m.UpTenant(ctx, t).Err
}

// gooseTableFirst creates, on Citus, a tenant schema's goose version table
// before goose would, with a bigint identity: in a distributed schema the
// table is distributed, and Citus cannot draw values for an integer
// identity on a worker node ("reached maximum value of sequence"), which is
// where goose's inserts run. goose finds the table and uses it as its own.
func (m *Migrator) gooseTableFirst(ctx context.Context, db *sql.DB, schema string) error {
	if !m.citus.Load() {
		return nil
	}
	for _, q := range gooseTable(pgx.Identifier{schema, "goose_db_version"}.Sanitize(), true) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("migrate: create goose's version table in %s: %w", schema, err)
		}
	}
	return nil
}
