package migrate

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// TenantStatus is where one tenant's schema stands.
type TenantStatus struct {
	Tenant  tenant.Tenant
	Current int64 // 0 when the schema has no version table yet
	Latest  int64
	Pending int // migrations of the chain above Current
}

// Status returns current, latest and pending for every tenant of
// Config.Tenants. It reads the version tables of the whole fleet in a few
// queries (no goose provider per tenant), so checking a fleet that is
// already current is cheap.
func (m *Migrator) Status(ctx context.Context) ([]TenantStatus, error) {
	if m.cfg.Tenants == nil {
		return nil, fmt.Errorf("%w: Config.Tenants is nil", ErrInvalidConfig)
	}
	tenants, err := m.cfg.Tenants.Tenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: list tenants: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, m.cfg.ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	versions, err := m.versions(ctx, conn, tenants)
	if err != nil {
		return nil, fmt.Errorf("migrate: read versions: %w", err)
	}
	out := make([]TenantStatus, len(tenants))
	for i, t := range tenants {
		cur := versions[pgtenant.SchemaName(t)]
		pending := len(m.sources) - sort.Search(len(m.sources), func(j int) bool { return m.sources[j] > cur })
		out[i] = TenantStatus{Tenant: t, Current: cur, Latest: m.latest, Pending: pending}
	}
	return out, nil
}

// versionChunk bounds the schemas one UNION ALL query reads.
const versionChunk = 500

// versions returns the current version of every schema that has a goose
// table: one catalog query finds them, then one UNION ALL per 500 schemas.
func (m *Migrator) versions(ctx context.Context, conn *pgx.Conn, tenants []tenant.Tenant) (map[string]int64, error) {
	schemas := make([]string, 0, len(tenants))
	for _, t := range tenants {
		if t.Validate() == nil {
			schemas = append(schemas, pgtenant.SchemaName(t))
		}
	}
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
			// goose's own rule: the newest applied row, minus rolled-back ones.
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

// Progress is reported after each tenant of UpAll.
type Progress struct {
	Done, Total, Failed int
	Last                TenantResult
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

// UpAll migrates every tenant of Config.Tenants that is behind, with
// Config.Concurrency workers, each on a connection of its own whose
// search_path is set to the schema it migrates. A failing tenant stays at its
// last good version and the others go on (unless StopOnError); rerunning
// UpAll finishes the job. Cancelling ctx stops between migrations; the
// report says what ran. The error is ctx's, or a listing failure; tenant
// failures are in the report (Report.Err).
func (m *Migrator) UpAll(ctx context.Context) (Report, error) {
	start := time.Now()
	statuses, err := m.Status(ctx)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Total: len(statuses)}
	var todo []tenant.Tenant
	for _, s := range statuses {
		if s.Pending > 0 {
			todo = append(todo, s.Tenant)
		} else {
			rep.Skipped++
		}
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan tenant.Tenant)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(m.cfg.Concurrency, max(len(todo), 1)) {
		wg.Go(func() {
			w := m.newWorker()
			defer w.close()
			for t := range jobs {
				res := m.migrateTenant(ctx, w, t, upLatest(ctx))
				mu.Lock()
				rep.Results = append(rep.Results, res)
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
					m.cfg.Progress(Progress{Done: done, Total: len(todo), Failed: rep.Failed, Last: res})
				}
				if done%100 == 0 || done == len(todo) {
					m.cfg.Logger.InfoContext(ctx, "tenant migrations", "done", done, "total", len(todo), "failed", rep.Failed, "skipped", rep.Skipped)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, t := range todo {
		select {
		case jobs <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	rep.Duration = time.Since(start)
	if parent.Err() != nil {
		return rep, parent.Err()
	}
	return rep, nil
}

func upLatest(ctx context.Context) func(*goose.Provider) ([]*goose.MigrationResult, error) {
	return func(p *goose.Provider) ([]*goose.MigrationResult, error) { return p.Up(ctx) }
}
