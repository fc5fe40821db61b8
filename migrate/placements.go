package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pressly/goose/v3"
)

// Placement is one database of a fleet spread over several (see provision's
// placements): the Migrator of that database (its ConnConfig connects to
// it as its owner role) and the tenants placed there.
type Placement struct {
	// Name names the placement in reports.
	Name string
	// Migrator migrates that database. Required.
	Migrator *Migrator
	// Tenants lists the tenants placed there: the Registry of the
	// placement (provision's Registry.Placements). Required.
	Tenants TenantSource
}

// Placements is a fleet over several databases: the shared chain runs once
// per database, the tenant chain over every tenant of each.
type Placements []Placement

// PlacementReport is the outcome of UpAll in one placement.
type PlacementReport struct {
	Name string
	// Shared are the shared migrations UpAll applied there first.
	Shared []*goose.MigrationResult
	Report
}

// FleetReport is the outcome of [Placements.UpAll].
type FleetReport struct {
	Placements []PlacementReport
	Duration   time.Duration
}

// Err joins the errors of the failed tenants of every placement, each
// naming its placement, or returns nil.
func (r FleetReport) Err() error {
	var errs []error
	for _, p := range r.Placements {
		if err := p.Report.Err(); err != nil {
			errs = append(errs, fmt.Errorf("placement %q: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (ps Placements) check() error {
	for i, p := range ps {
		if p.Migrator == nil || p.Tenants == nil {
			return fmt.Errorf("%w: Placements[%d] (%q) needs a Migrator and Tenants", ErrInvalidConfig, i, p.Name)
		}
	}
	return nil
}

// UpAll brings every placement up to date, one placement after another:
// its shared chain (UpShared), then its tenants (Migrator.UpAll, with that
// Migrator's concurrency and progress). A placement whose shared chain
// fails is reported by the error and the placements after it are not run;
// tenant failures are in the report (FleetReport.Err), and rerunning UpAll
// finishes the job.
func (ps Placements) UpAll(ctx context.Context) (FleetReport, error) {
	start := time.Now()
	var out FleetReport
	if err := ps.check(); err != nil {
		return out, err
	}
	for _, p := range ps {
		pr := PlacementReport{Name: p.Name}
		if p.Migrator.cfg.Shared != nil {
			res, err := p.Migrator.UpShared(ctx)
			if err != nil {
				out.Duration = time.Since(start)
				return out, fmt.Errorf("placement %q: shared chain: %w", p.Name, err)
			}
			pr.Shared = res
		}
		rep, err := p.Migrator.UpAll(ctx, p.Tenants)
		pr.Report = rep
		out.Placements = append(out.Placements, pr)
		if err != nil {
			out.Duration = time.Since(start)
			return out, fmt.Errorf("placement %q: %w", p.Name, err)
		}
	}
	out.Duration = time.Since(start)
	return out, nil
}

// PlacedStatus is a tenant's TenantStatus and its placement.
type PlacedStatus struct {
	Placement string
	TenantStatus
}

// Status returns every tenant's status in every placement, placement by
// placement.
func (ps Placements) Status(ctx context.Context) ([]PlacedStatus, error) {
	if err := ps.check(); err != nil {
		return nil, err
	}
	var out []PlacedStatus
	for _, p := range ps {
		st, err := p.Migrator.Status(ctx, p.Tenants)
		if err != nil {
			return nil, fmt.Errorf("placement %q: %w", p.Name, err)
		}
		for _, s := range st {
			out = append(out, PlacedStatus{Placement: p.Name, TenantStatus: s})
		}
	}
	return out, nil
}
