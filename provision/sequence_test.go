package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/provision"
)

// TestCreateRefusesSequenceDefaults: a builder that makes a serial column is
// refused, naming the column, and nothing of the tenant remains.
func TestCreateRefusesSequenceDefaults(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	r := newRegistry(t, pg, func(c *provision.Config) {
		c.Builder = provision.DDL("CREATE TABLE notes (id serial PRIMARY KEY, tenant_id uuid NOT NULL, body text)")
	})
	ctx := context.Background()
	s := slug("serial")
	_, err := r.Create(ctx, provision.Spec{Slug: s})
	if !errors.Is(err, provision.ErrSequenceDefault) || !strings.Contains(err.Error(), "notes.id") || !strings.Contains(err.Error(), "IDENTITY") {
		t.Fatalf("Create: %v, want ErrSequenceDefault naming notes.id", err)
	}
	if _, err := r.Get(ctx, s); !errors.Is(err, provision.ErrTenantNotFound) {
		t.Errorf("registry row left behind: %v", err)
	}
	var exists bool
	if err := pg.OwnerPool(t).QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", "tenant_"+s).Scan(&exists); err != nil || exists {
		t.Errorf("schema left behind (%v)", err)
	}
}
