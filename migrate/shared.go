package migrate

import (
	"context"
	"errors"
	"fmt"
)

// ErrSharedPending is matched by the error of [Migrator.UpAll] when the
// shared chain has migrations not yet applied: tenant migrations may use
// what the shared chain makes, and a service would run against a shared
// schema that lacks its tables. Run [Migrator.UpShared] first.
var ErrSharedPending = errors.New("migrate: the shared chain has pending migrations")

// SharedStatus is the state of the shared chain (Config.Shared) in schema
// public.
type SharedStatus struct {
	// Current is the highest version applied, 0 when none is.
	Current int64
	// Latest is the highest version of Config.Shared.
	Latest int64
	// Pending are the versions of Config.Shared not applied, in order.
	Pending []int64
}

// SharedPendingError is UpAll's refusal while the shared chain is behind.
type SharedPendingError struct{ Status SharedStatus }

func (e *SharedPendingError) Error() string {
	return fmt.Sprintf("migrate: the shared chain is at version %d of %d (%d pending in public.goose_db_version); run UpShared before UpAll",
		e.Status.Current, e.Status.Latest, len(e.Status.Pending))
}

// Unwrap returns ErrSharedPending.
func (e *SharedPendingError) Unwrap() error { return ErrSharedPending }

// SharedStatus reads which migrations of the shared chain are applied,
// without creating anything (a database never migrated has none). With no
// Config.Shared it returns the zero SharedStatus.
func (m *Migrator) SharedStatus(ctx context.Context) (SharedStatus, error) {
	var st SharedStatus
	if m.cfg.Shared == nil {
		return st, nil
	}
	w := m.newWorker()
	defer w.close()
	p, err := m.provider(w.db, m.cfg.Shared, "public.goose_db_version")
	if err != nil {
		return st, fmt.Errorf("migrate: shared migrations: %w", err)
	}
	applied := map[int64]bool{}
	var exists bool
	if err := w.db.QueryRowContext(ctx, "SELECT to_regclass('public.goose_db_version') IS NOT NULL").Scan(&exists); err != nil {
		return st, fmt.Errorf("migrate: read the shared chain's versions: %w", err)
	}
	if exists {
		rows, err := w.db.QueryContext(ctx, "SELECT version_id FROM public.goose_db_version WHERE is_applied AND version_id > 0")
		if err != nil {
			return st, fmt.Errorf("migrate: read the shared chain's versions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				return st, fmt.Errorf("migrate: read the shared chain's versions: %w", err)
			}
			applied[v] = true
			st.Current = max(st.Current, v)
		}
		if err := rows.Err(); err != nil {
			return st, fmt.Errorf("migrate: read the shared chain's versions: %w", err)
		}
	}
	for _, s := range p.ListSources() {
		st.Latest = max(st.Latest, s.Version)
		if !applied[s.Version] {
			st.Pending = append(st.Pending, s.Version)
		}
	}
	return st, nil
}
