package migrate_test

import (
	"context"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/migrate"
)

// TestUpAllRefusesWhileSharedPending: with a shared chain configured,
// UpAll migrates no tenant while the shared chain has a pending migration
// (a *SharedPendingError naming the versions), and goes ahead once UpShared
// applied it; SharedStatus reports both states without creating anything.
// Not parallel: it applies a version of its own to public's version table,
// which it removes again, before the package's parallel tests share it.
func TestUpAllRefusesWhileSharedPending(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	owner := pg.OwnerPool(t)
	t.Cleanup(func() {
		for _, sql := range []string{"DROP TABLE IF EXISTS public.migrate_test_pending",
			"DO $$BEGIN IF to_regclass('public.goose_db_version') IS NOT NULL THEN DELETE FROM public.goose_db_version WHERE version_id = 70001; END IF; END$$"} {
			if _, err := owner.Exec(ctx, sql); err != nil {
				t.Errorf("clean up: %s: %v", sql, err)
			}
		}
	})
	tenants := fleet(t, pg, "pend", 2)
	shared := fstest.MapFS{"70001_pending.sql": {Data: []byte("-- +goose Up\nCREATE TABLE public.migrate_test_pending (id int);\n-- +goose Down\nDROP TABLE public.migrate_test_pending;\n")}}
	m := newMigrator(t, pg, tenantChain(t), func(c *migrate.Config) { c.Shared = shared })

	st, err := m.SharedStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(migrate.SharedStatus{Latest: 70001, Pending: []int64{70001}}, st); diff != "" {
		t.Errorf("SharedStatus before UpShared (-want +got):\n%s", diff)
	}
	rep, err := m.UpAll(ctx, source(tenants))
	var pe *migrate.SharedPendingError
	if !errors.Is(err, migrate.ErrSharedPending) || !errors.As(err, &pe) || len(pe.Status.Pending) != 1 {
		t.Fatalf("UpAll before UpShared: %v, want a *SharedPendingError", err)
	}
	if rep.Migrated != 0 {
		t.Errorf("UpAll refused but migrated %d tenants", rep.Migrated)
	}
	statuses, err := m.Status(ctx, source(tenants))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range statuses {
		if s.Current != 0 {
			t.Errorf("%s at version %d after a refused UpAll, want 0", s.Tenant.Slug, s.Current)
		}
	}

	if _, err := m.UpShared(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err = m.SharedStatus(ctx); err != nil || st.Current != 70001 || len(st.Pending) != 0 {
		t.Errorf("SharedStatus after UpShared: %+v, %v", st, err)
	}
	if rep, err = m.UpAll(ctx, source(tenants)); err != nil || rep.Err() != nil || rep.Migrated != 2 {
		t.Errorf("UpAll after UpShared: %+v, %v, %v", rep, err, rep.Err())
	}
}
