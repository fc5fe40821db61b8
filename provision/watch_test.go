package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

// TestWatchInvalidatesEveryInstance: two caches, each with its own watcher on
// its own connection (as two instances of a service would have), both serve
// a tenant; a suspension is refused by both within a second, by slug and by
// ID, and the resumption is served again.
func TestWatchInvalidatesEveryInstance(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	r := newRegistry(t, pg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec, err := r.Create(ctx, provision.Spec{Slug: slug("watch")})
	if err != nil {
		t.Fatal(err)
	}
	caches := []*tenant.Cache{
		tenant.NewCache(r, tenant.CacheConfig{TTL: time.Hour, NegativeTTL: time.Hour}),
		tenant.NewCache(r, tenant.CacheConfig{TTL: time.Hour, NegativeTTL: time.Hour}),
	}
	done := make(chan error, len(caches))
	for _, c := range caches {
		go func() { done <- r.Watch(ctx, c) }()
	}
	time.Sleep(200 * time.Millisecond) // let both watchers LISTEN
	for _, c := range caches {
		for _, key := range []string{rec.Slug, rec.ID} {
			if _, err := c.LookupTenant(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
	}
	within := func(what string, want error) {
		t.Helper()
		start := time.Now()
		for _, c := range caches {
			for _, key := range []string{rec.Slug, rec.ID} {
				for {
					_, err := c.LookupTenant(ctx, key)
					if errors.Is(err, want) || (want == nil && err == nil) {
						break
					}
					if time.Since(start) > time.Second {
						t.Fatalf("%s: %q still answers %v after 1 s", what, key, err)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		}
		t.Logf("%s seen by every cache in %v", what, time.Since(start))
	}
	if err := r.Suspend(ctx, rec.Slug); err != nil {
		t.Fatal(err)
	}
	within("suspension", tenant.ErrSuspended)
	if err := r.Resume(ctx, rec.Slug); err != nil {
		t.Fatal(err)
	}
	within("resumption", nil)
	// The watchers' connections die; they reconnect and keep working.
	var killed int
	if err := pg.AdminPool(t).QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN "tenancy_registry"%'`).Scan(&killed); err != nil || killed != 2 {
		t.Fatalf("terminated %d watcher connections (%v), want 2", killed, err)
	}
	time.Sleep(700 * time.Millisecond)
	if err := r.Suspend(ctx, rec.Slug); err != nil {
		t.Fatal(err)
	}
	within("suspension after a reconnect", tenant.ErrSuspended)
	if err := r.Delete(ctx, rec.Slug); err != nil {
		t.Fatal(err)
	}
	within("deletion", tenant.ErrNotFound)
	cancel()
	for range caches {
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	}
}

// TestUpdate: the display name changes, validated, and the change is
// announced on WatchChannel in the same statement.
func TestUpdate(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	r := newRegistry(t, pg, nil)
	ctx := context.Background()
	rec, err := r.Create(ctx, provision.Spec{Slug: slug("update"), Name: "Before"})
	if err != nil {
		t.Fatal(err)
	}
	listener, err := pgx.Connect(ctx, pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN "+provision.WatchChannel); err != nil {
		t.Fatal(err)
	}
	name := "After ✓"
	got, err := r.Update(ctx, rec.Slug, provision.Update{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != name || got.ID != rec.ID || !got.UpdatedAt.After(rec.UpdatedAt) {
		t.Errorf("Update returned %+v", got)
	}
	if again, err := r.Get(ctx, rec.Slug); err != nil || again.Name != name {
		t.Errorf("Get after Update: %+v, %v", again, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Tests running in parallel announce their own tenants on the same
	// channel: skip theirs.
	var n *pgconn.Notification
	for err == nil && (n == nil || !strings.HasSuffix(n.Payload, " "+rec.Slug)) {
		n, err = listener.WaitForNotification(wctx)
	}
	if err != nil || n.Payload != rec.ID+" "+rec.Slug {
		t.Errorf("notification %+v, %v; want payload %q", n, err, rec.ID+" "+rec.Slug)
	}
	for _, bad := range []string{strings.Repeat("x", provision.MaxNameLen+1), "nul\x00", "\xff"} {
		if _, err := r.Update(ctx, rec.Slug, provision.Update{Name: &bad}); !errors.Is(err, provision.ErrInvalidName) {
			t.Errorf("Update name %q: %v, want ErrInvalidName", bad, err)
		}
		if _, err := r.Create(ctx, provision.Spec{Slug: slug("badname"), Name: bad}); !errors.Is(err, provision.ErrInvalidName) {
			t.Errorf("Create name %q: %v, want ErrInvalidName", bad, err)
		}
	}
	if _, err := r.Update(ctx, "no_such_tenant", provision.Update{Name: &name}); !errors.Is(err, provision.ErrTenantNotFound) {
		t.Errorf("Update of an unknown slug: %v", err)
	}
}
