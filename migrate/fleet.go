package migrate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/internal/sqllex"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
	"golang.org/x/sync/errgroup"
)

// TenantStatus is where one tenant's schema stands.
type TenantStatus struct {
	Tenant  tenant.Tenant
	Current int64 // 0 when the schema has no version table yet
	Latest  int64
	Pending int // migrations of the chain above Current
}

// Status returns current, latest and pending for every tenant tenants
// lists. It reads the version tables of the whole fleet in a few
// queries (no goose provider per tenant), so checking a fleet that is
// already current is cheap.
func (m *Migrator) Status(ctx context.Context, source TenantSource) ([]TenantStatus, error) {
	out, _, err := m.status(ctx, source)
	return out, err
}

// status is Status, and whether the database has the function the fleet
// runner secures new tables with.
func (m *Migrator) status(ctx context.Context, source TenantSource) ([]TenantStatus, bool, error) {
	if source == nil {
		return nil, false, ErrNoTenantSource
	}
	tenants, err := source.Tenants(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("migrate: list tenants: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, m.cfg.ConnConfig)
	if err != nil {
		return nil, false, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	versions, err := m.versions(ctx, conn, tenants)
	if err != nil {
		return nil, false, fmt.Errorf("migrate: read versions: %w", err)
	}
	var secure, citus bool
	if err := conn.QueryRow(ctx, "SELECT to_regprocedure($1) IS NOT NULL, "+rls.CitusInstalled,
		secureFunction).Scan(&secure, &citus); err != nil {
		return nil, false, fmt.Errorf("migrate: %w", err)
	}
	m.citus.Store(citus)
	out := make([]TenantStatus, len(tenants))
	for i, t := range tenants {
		cur := versions[pgtenant.SchemaName(t)]
		pending := len(m.sources) - sort.Search(len(m.sources), func(j int) bool { return m.sources[j] > cur })
		out[i] = TenantStatus{Tenant: t, Current: cur, Latest: m.latest, Pending: pending}
	}
	return out, secure, nil
}

// versionChunk bounds the schemas one UNION ALL query reads.
const versionChunk = 500

// The version summary: one row per tenant schema, written after each tenant
// migration, so checking a fleet reads one table. Reading every schema's
// goose table instead makes a fresh backend open (and cache) a thousand
// relations, about a second for 1,000 tenants. Rows are keyed by the
// schema's OID too: a schema dropped and created again is read afresh.
//
// CREATE ... IF NOT EXISTS is not safe against a concurrent creator (it can
// fail with 23505 on the catalog), so the statements take rls.SchemaLock, as
// the provision registry does for its own tables in schema tenancy; sent one
// statement per query string (as Citus needs) before one Sync, they run in
// one implicit transaction, which holds the lock to the end. On Citus the
// schema stays on the coordinator, whatever the role or session says about
// schema-based sharding. The same transaction installs, where they are
// missing, the server functions that tell the tenant policy by its meaning
// (rls.PoliciesDDL), which every securing step of migrate reads.
var summaryDDL = "SELECT pg_advisory_xact_lock(" + strconv.FormatInt(rls.SchemaLock, 10) + `);
	SELECT set_config('citus.enable_schema_based_sharding', 'off', true) WHERE ` + rls.CitusInstalled + `;
	CREATE SCHEMA IF NOT EXISTS tenancy;
	CREATE TABLE IF NOT EXISTS tenancy.migrate_versions (
		schema_name text PRIMARY KEY,
		schema_oid  oid NOT NULL,
		version     bigint NOT NULL,
		updated_at  timestamptz NOT NULL DEFAULT now()
	);
	` + rls.PoliciesDDL

func (m *Migrator) ensureSummary(ctx context.Context, conn *pgx.Conn) error {
	m.summaryOnce.Do(func() {
		m.summaryErr = rls.ExecEach(ctx, conn.PgConn(), sqllex.Statements(summaryDDL))
	})
	return m.summaryErr
}

// versions returns the current version of every tenant schema that has one:
// from the summary where it is up to date, else from the schema's goose
// table (read in UNION ALL queries of 500 schemas), which is then recorded.
func (m *Migrator) versions(ctx context.Context, conn *pgx.Conn, tenants []tenant.Tenant) (map[string]int64, error) {
	if err := m.ensureSummary(ctx, conn); err != nil {
		return nil, err
	}
	schemas := make([]string, 0, len(tenants))
	for _, t := range tenants {
		if t.Validate() == nil {
			schemas = append(schemas, pgtenant.SchemaName(t))
		}
	}
	out := make(map[string]int64, len(schemas))
	rows, _ := conn.Query(ctx, `SELECT v.schema_name, v.version FROM tenancy.migrate_versions v
		JOIN pg_namespace n ON n.nspname = v.schema_name AND n.oid = v.schema_oid
		WHERE v.schema_name = ANY($1)`, schemas)
	var name string
	var version int64
	if _, err := pgx.ForEachRow(rows, []any{&name, &version}, func() error { out[name] = version; return nil }); err != nil {
		return nil, err
	}
	var unknown []string
	for _, s := range schemas {
		if _, ok := out[s]; !ok {
			unknown = append(unknown, s)
		}
	}
	if len(unknown) == 0 {
		return out, nil
	}
	fromTables, err := readGooseTables(ctx, conn, unknown)
	if err != nil {
		return nil, err
	}
	if len(fromTables) > 0 {
		names := make([]string, 0, len(fromTables))
		vers := make([]int64, 0, len(fromTables))
		for s, v := range fromTables {
			out[s] = v
			names, vers = append(names, s), append(vers, v)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO tenancy.migrate_versions (schema_name, schema_oid, version)
			SELECT s, to_regnamespace(quote_ident(s)), v FROM unnest($1::text[], $2::bigint[]) AS x(s, v)
			ON CONFLICT (schema_name) DO UPDATE SET schema_oid = excluded.schema_oid, version = excluded.version, updated_at = now()`,
			names, vers); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readGooseTables reads the current version from the goose table of each
// schema that has one.
func readGooseTables(ctx context.Context, conn *pgx.Conn, schemas []string) (map[string]int64, error) {
	rows, _ := conn.Query(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = 'goose_db_version' AND c.relkind = 'r' AND n.nspname = ANY($1)`, schemas)
	withTable, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(withTable))
	for start := 0; start < len(withTable); start += versionChunk {
		chunk := withTable[start:min(start+versionChunk, len(withTable))]
		parts := make([]string, len(chunk))
		for i, s := range chunk {
			// goose's own rule: the newest applied row.
			parts[i] = fmt.Sprintf("(SELECT %d, coalesce((SELECT version_id FROM %s WHERE is_applied ORDER BY id DESC LIMIT 1), 0))",
				i, pgx.Identifier{s, "goose_db_version"}.Sanitize())
		}
		rows, _ := conn.Query(ctx, strings.Join(parts, " UNION ALL "))
		var idx int
		var v int64
		_, err := pgx.ForEachRow(rows, []any{&idx, &v}, func() error {
			out[chunk[idx]] = v
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Refresh rereads every tenant's goose table into the version summary. Run
// it after migrating tenant schemas with goose directly, outside this
// package; UpAll and the Up/Down calls keep the summary current themselves.
func (m *Migrator) Refresh(ctx context.Context, tenants TenantSource) error {
	if tenants == nil {
		return ErrNoTenantSource
	}
	conn, err := pgx.ConnectConfig(ctx, m.cfg.ConnConfig)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := m.ensureSummary(ctx, conn); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := conn.Exec(ctx, "TRUNCATE tenancy.migrate_versions"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	_, err = m.Status(ctx, tenants)
	return err
}

// Progress is reported after each tenant of UpAll, for a progress bar or a
// log line.
type Progress struct {
	// Done of Total tenants that were behind have been run; Failed of them
	// failed.
	Done, Total, Failed int
	// Last is the tenant that just finished.
	Last TenantResult
	// Elapsed is the time since UpAll began; Rate is Done per second over
	// it; ETA is the time the remaining tenants take at that rate (zero
	// when nothing remains).
	Elapsed time.Duration
	Rate    float64
	ETA     time.Duration
}

// Report is the outcome of UpAll.
type Report struct {
	// Results has one entry per tenant that was migrated or failed, in the
	// order they finished. Up-to-date tenants are counted in Skipped only.
	Results  []TenantResult
	Total    int
	Migrated int
	Skipped  int
	Failed   int
	Duration time.Duration
}

// Err joins the errors of the failed tenants, or returns nil.
func (r Report) Err() error {
	var errs []error
	for _, res := range r.Results {
		if res.Err != nil {
			errs = append(errs, res.Err)
		}
	}
	return errors.Join(errs...)
}

// UpAll migrates every tenant that tenants lists and that is behind, with
// Config.Concurrency workers, each on a connection of its own.
//
// A tenant whose pending migrations are all goose SQL files that run in a
// transaction gets them from the fleet runner: all of them, goose's version
// rows, the securing of new tables (row level security and grants, as
// provision does) and the version summary in one transaction — one round
// trip with provision's registry installed (tenancy.secure_schema), two
// without — and a failing tenant keeps none of its pending migrations.
// goose's tables read afterwards, by Status or by goose itself, show the
// same versions as if goose had applied them. Any other tenant goes through
// goose, one migration per transaction, like UpTenant: Go migrations, files
// marked NO TRANSACTION or ENVSUB, files with transaction control or with
// several SQL statements in one goose statement, and a schema whose goose
// table disagrees with the version summary (someone ran goose by hand;
// goose then decides, and reports out-of-order versions).
//
// With Config.Shared set, UpAll first checks that the shared chain has no
// pending migration (a *SharedPendingError, matching ErrSharedPending, if it
// has: run UpShared first), and migrates no tenant otherwise.
//
// A failing tenant stays at its last good version and the others go on
// (unless StopOnError); rerunning UpAll finishes the job. Cancelling ctx
// stops between tenants; the report says what ran. The error is ctx's, or a
// listing failure; tenant failures are in the report (Report.Err).
func (m *Migrator) UpAll(ctx context.Context, tenants TenantSource) (Report, error) {
	start := time.Now()
	if m.cfg.Shared != nil {
		shared, err := m.SharedStatus(ctx)
		if err != nil {
			return Report{}, err
		}
		if len(shared.Pending) > 0 {
			return Report{}, &SharedPendingError{Status: shared}
		}
	}
	statuses, secure, err := m.status(ctx, tenants)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Total: len(statuses)}
	var todo []TenantStatus
	for _, s := range statuses {
		if s.Pending > 0 {
			todo = append(todo, s)
		} else {
			rep.Skipped++
		}
	}
	// The tenant policy's forms are probed beside the first tenants, not
	// before them: they only spare later tenants' securing checks a probe
	// (a tenant without them probes itself), so neither a slow probe nor a
	// failed one holds the fleet up.
	// UpAll returns once the probe is cancelled and done.
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	formsDone := make(chan struct{})
	go func(ctx context.Context) {
		defer close(formsDone)
		if _, err := m.policyForms(ctx, todo); err != nil {
			m.cfg.Logger.DebugContext(ctx, "tenant policy forms not probed; each tenant probes its own", "error", err)
		}
	}(ctx)
	defer func() { cancel(); <-formsDone }()
	// Workers are connections, reused tenant after tenant; errgroup bounds
	// how many tenants run at once, hence how many workers exist.
	workers := make(chan *worker, m.cfg.Concurrency)
	defer func() {
		close(workers)
		for w := range workers {
			w.close()
		}
	}()
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(m.cfg.Concurrency)
	for _, job := range todo {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			var w *worker
			select {
			case w = <-workers:
			default:
				w = m.newWorker()
			}
			defer func() { workers <- w }()
			res := m.upOne(ctx, w, job, secure, m.policyFormsKnown())
			mu.Lock()
			defer mu.Unlock()
			rep.Results = append(rep.Results, res)
			t := job.Tenant
			if res.Err != nil {
				rep.Failed++
				m.cfg.Logger.ErrorContext(ctx, "tenant migration failed", "tenant_id", t.ID, "tenant_slug", t.Slug, "error", res.Err)
				if m.cfg.StopOnError {
					cancel()
				}
			} else {
				rep.Migrated++
			}
			done := rep.Migrated + rep.Failed
			if m.cfg.Progress != nil {
				m.cfg.Progress(progress(done, len(todo), rep.Failed, res, time.Since(start)))
			}
			if done%100 == 0 || done == len(todo) {
				m.cfg.Logger.InfoContext(ctx, "tenant migrations", "done", done, "total", len(todo), "failed", rep.Failed, "skipped", rep.Skipped)
			}
			return nil
		})
	}
	_ = g.Wait()
	rep.Duration = time.Since(start)
	if parent.Err() != nil {
		return rep, parent.Err()
	}
	return rep, nil
}

// upOne brings one tenant to the latest version: through the fleet runner
// where it can (see UpAll), else through goose.
func (m *Migrator) upOne(ctx context.Context, w *worker, job TenantStatus, secure bool, forms []string) TenantResult {
	if files, fast := m.pending(job.Current); fast && len(files) > 0 && job.Tenant.Validate() == nil {
		res := m.runFast(ctx, w, job.Tenant, job.Current, files, secure, forms)
		if res.Err != errNotFast {
			return res
		}
		m.cfg.Logger.DebugContext(ctx, "tenant migrations handed to goose: version table differs from the summary", "tenant_id", job.Tenant.ID)
		job.Current = -1 // goose reads the version itself
	}
	return m.migrateTenant(ctx, w, job.Tenant, job.Current, false, upLatest(ctx))
}

func progress(done, total, failed int, last TenantResult, elapsed time.Duration) Progress {
	p := Progress{Done: done, Total: total, Failed: failed, Last: last, Elapsed: elapsed}
	if elapsed > 0 {
		p.Rate = float64(done) / elapsed.Seconds()
	}
	if p.Rate > 0 && total > done {
		p.ETA = time.Duration(float64(total-done) / p.Rate * float64(time.Second))
	}
	return p
}

func upLatest(ctx context.Context) func(*goose.Provider) ([]*goose.MigrationResult, error) {
	return func(p *goose.Provider) ([]*goose.MigrationResult, error) { return p.Up(ctx) }
}

// policyForms probes the tenant policy's forms for the first tenant of todo
// that has a schema (rls.FormsSQL), for every tenant's securing step: one
// probe per column type for the fleet, not one per tenant. Another tenant's
// form is this one with its pin replaced; a type or tenant it does not fit
// is probed in its own securing step. The forms are kept for the
// Migrator's later runs.
func (m *Migrator) policyForms(ctx context.Context, todo []TenantStatus) ([]string, error) {
	// With one tenant there is no other to spare a probe: it probes itself,
	// and no second connection competes with it.
	if f := m.policyFormsKnown(); f != nil || len(todo) < 2 {
		return f, nil
	}
	conn, err := pgx.ConnectConfig(ctx, m.cfg.ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range todo {
		if s.Tenant.Validate() != nil {
			continue
		}
		forms, err := m.formsFor(ctx, conn, s.Tenant)
		if err != nil {
			return nil, fmt.Errorf("migrate: probe the tenant policy: %w", err)
		}
		if len(forms) > 0 {
			return forms, nil
		}
	}
	return nil, nil
}

// formsFor returns the tenant policy's forms m knows, or probes them on q
// for t's schema (rls.FormsSQL) and keeps them for the Migrator's other
// securing steps, which replace the pin instead of probing. A schema that
// is missing or holds no table gives none, and none are kept.
func (m *Migrator) formsFor(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, t tenant.Tenant) ([]string, error) {
	if f := m.policyFormsKnown(); f != nil {
		return f, nil
	}
	var forms []string
	if err := q.QueryRow(ctx, rls.FormsSQL, pgtenant.SchemaName(t), m.cfg.Setting, t.ID).Scan(&forms); err != nil {
		return nil, err
	}
	if len(forms) > 0 {
		m.forms.Store(&forms)
	}
	return forms, nil
}

// policyFormsKnown returns the forms probed so far, or nil.
func (m *Migrator) policyFormsKnown() []string {
	if f := m.forms.Load(); f != nil {
		return *f
	}
	return nil
}
