package tenant_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tenancykit/tenancy/tenant"
)

func TestContextRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, ok := tenant.FromContext(ctx); ok {
		t.Fatal("empty context reports a tenant")
	}
	acme := tenant.Tenant{ID: "1", Slug: "acme"}
	ctx = tenant.NewContext(ctx, acme)
	got, ok := tenant.FromContext(ctx)
	if !ok || got != acme {
		t.Fatalf("FromContext = %v, %v; want %v, true", got, ok, acme)
	}
	globex := tenant.Tenant{ID: "2", Slug: "globex"}
	inner := tenant.NewContext(ctx, globex)
	if got, _ := tenant.FromContext(inner); got != globex {
		t.Errorf("inner context = %v, want %v", got, globex)
	}
	if got, _ := tenant.FromContext(ctx); got != acme {
		t.Errorf("outer context changed to %v", got)
	}
}

func TestRequireFailsClosed(t *testing.T) {
	t.Parallel()
	if _, err := tenant.Require(context.Background()); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("Require(no tenant) = %v, want ErrNoTenant", err)
	}
	zero := tenant.NewContext(context.Background(), tenant.Tenant{})
	if _, err := tenant.Require(zero); !errors.Is(err, tenant.ErrInvalidID) {
		t.Errorf("Require(zero tenant) = %v, want ErrInvalidID", err)
	}
	bad := tenant.NewContext(context.Background(), tenant.Tenant{ID: "1", Slug: "Bad"})
	if _, err := tenant.Require(bad); !errors.Is(err, tenant.ErrInvalidSlug) {
		t.Errorf("Require(bad slug) = %v, want ErrInvalidSlug", err)
	}
	good := tenant.NewContext(context.Background(), tenant.Tenant{ID: "1", Slug: "acme"})
	if got, err := tenant.Require(good); err != nil || got.Slug != "acme" {
		t.Errorf("Require(acme) = %v, %v", got, err)
	}
}
