package provision_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/provision"
)

// TestOneNamespaceOfNames: a live tenant's ID and slug and every other live
// tenant's ID and slug are all distinct, so a lookup key names at most one
// tenant, and races cannot break that.
func TestOneNamespaceOfNames(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	r := newRegistry(t, pg, func(c *provision.Config) {
		// IDs here are slugs, not UUIDs.
		c.Builder = provision.DDL("CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL)")
	})
	ctx := context.Background()
	a, err := r.Create(ctx, provision.Spec{Slug: slug("names")})
	if err != nil {
		t.Fatal(err)
	}
	// Another tenant whose ID is a's slug, or whose slug is a's ID (when a's
	// ID is a valid slug), is refused.
	if _, err := r.Create(ctx, provision.Spec{ID: a.Slug, Slug: slug("names")}); !errors.Is(err, provision.ErrTenantExists) {
		t.Errorf("ID = another tenant's slug: %v, want ErrTenantExists", err)
	}
	b, err := r.Create(ctx, provision.Spec{ID: "names_b_" + a.Slug[len(a.Slug)-6:], Slug: slug("names")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create(ctx, provision.Spec{Slug: b.ID}); !errors.Is(err, provision.ErrTenantExists) {
		t.Errorf("slug = another tenant's ID: %v, want ErrTenantExists", err)
	}
	for _, key := range []string{a.ID, a.Slug} {
		if got, err := r.LookupTenant(ctx, key); err != nil || got.ID != a.ID {
			t.Errorf("LookupTenant(%q) = %v, %v", key, got, err)
		}
	}

	// Two Creates naming each other, at once, many times: exactly one wins,
	// and each name then reaches that one.
	for i := range 10 {
		x, y := slug("race"), slug("race")
		var wg sync.WaitGroup
		var errs [2]error
		var recs [2]provision.Record
		for j, spec := range []provision.Spec{{ID: x, Slug: y}, {ID: y, Slug: x}} {
			wg.Go(func() { recs[j], errs[j] = r.Create(ctx, spec) })
		}
		wg.Wait()
		won := 0
		for j := range errs {
			switch {
			case errs[j] == nil:
				won++
			case !errors.Is(errs[j], provision.ErrTenantExists):
				t.Fatalf("race %d: %v", i, errs[j])
			}
		}
		if won != 1 {
			t.Fatalf("race %d: %d Creates succeeded (%v), want exactly 1", i, won, errs)
		}
		winner := recs[0]
		if errs[0] != nil {
			winner = recs[1]
		}
		for _, key := range []string{x, y} {
			if got, err := r.LookupTenant(ctx, key); err != nil || got.ID != winner.ID {
				t.Errorf("race %d: LookupTenant(%q) = %v, %v; want %s", i, key, got, err, winner.ID)
			}
		}
	}

	// A deleted tenant's names are free again.
	if err := r.Delete(ctx, a.Slug); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create(ctx, provision.Spec{ID: a.Slug, Slug: slug("names")}); err != nil {
		t.Errorf("a deleted tenant's slug as a new ID: %v", err)
	}
}
