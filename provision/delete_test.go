package provision_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func schemaExists(t *testing.T, pg *testenv.PG, schema string) bool {
	t.Helper()
	var ok bool
	if err := pg.OwnerPool(t).QueryRow(context.Background(), "SELECT to_regnamespace($1) IS NOT NULL", pgx.Identifier{schema}.Sanitize()).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestDeleteManyTables(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	var stmts []string
	for i := range 300 {
		stmts = append(stmts, fmt.Sprintf("CREATE TABLE t%03d (id bigserial PRIMARY KEY, tenant_id text NOT NULL, v text UNIQUE)", i))
	}
	reg := newRegistry(t, pg, func(c *provision.Config) { c.Builder = provision.DDL(stmts...) })
	ctx := context.Background()
	keep, err := reg.Create(ctx, provision.Spec{Slug: slug("keep")})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := reg.Create(ctx, provision.Spec{Slug: slug("many")})
	if err != nil {
		t.Fatal(err)
	}
	// 300 tables, each with a sequence, a primary key and a unique index: far
	// more locks than one transaction may hold with the default
	// max_locks_per_transaction (64) if the lock table were not shared.
	if err := reg.Delete(ctx, rec.Slug); err != nil {
		t.Fatal(err)
	}
	if schemaExists(t, pg, rec.SchemaName) {
		t.Error("schema still there")
	}
	if !schemaExists(t, pg, keep.SchemaName) {
		t.Error("the other tenant's schema went too")
	}
	if _, err := reg.Get(ctx, rec.Slug); !errors.Is(err, provision.ErrTenantNotFound) {
		t.Errorf("Get after delete: %v", err)
	}
	var status string
	if err := pg.OwnerPool(t).QueryRow(ctx, "SELECT status FROM tenancy.tenants WHERE id = $1", rec.ID).Scan(&status); err != nil || status != "deleted" {
		t.Errorf("tombstone status %q (%v)", status, err)
	}
	if err := reg.Delete(ctx, rec.Slug); !errors.Is(err, provision.ErrTenantNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestDeleteRerunAfterCrash(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	raw := testenv.RedisClient(t)
	keys := redistenant.New(raw, redistenant.Config{})
	for _, crashAt := range []string{"drop tables", "drop schema", "purge keys", "mark deleted"} {
		crash := true
		reg := newRegistry(t, pg, func(c *provision.Config) {
			c.Purger = keys
			c.BeforeDeleteStep = func(_ context.Context, _, step string) error {
				if crash && step == crashAt {
					return errors.New("power cut")
				}
				return nil
			}
		})
		ctx := context.Background()
		rec, err := reg.Create(ctx, provision.Spec{Slug: slug("crash")})
		if err != nil {
			t.Fatal(err)
		}
		other := testenv.Tenant(t, "bystander")
		for _, tn := range []tenant.Tenant{rec.Tenant(), other} {
			if err := keys.Do(ctxFor(tn), keys.B().Set().Key("session").Value("x").Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _, _ = keys.Purge(context.Background(), other) })
		err = reg.Delete(ctx, rec.Slug)
		var se *provision.StepError
		if !errors.As(err, &se) || se.Step != crashAt {
			t.Fatalf("crash at %s: %v", crashAt, err)
		}
		// Not served while half deleted.
		if _, err := reg.LookupTenant(ctx, rec.Slug); !errors.Is(err, provision.ErrTenantNotFound) {
			t.Errorf("crash at %s: lookup of a deleting tenant: %v", crashAt, err)
		}
		crash = false
		if err := reg.Delete(ctx, rec.Slug); err != nil {
			t.Fatalf("rerun after crash at %s: %v", crashAt, err)
		}
		if schemaExists(t, pg, rec.SchemaName) {
			t.Errorf("crash at %s: schema survived the rerun", crashAt)
		}
		if n, _ := raw.Do(ctx, raw.B().Exists().Key(redistenant.Prefix(rec.Tenant())+"session").Build()).AsInt64(); n != 0 {
			t.Errorf("crash at %s: the tenant's Redis keys survived", crashAt)
		}
		if n, _ := raw.Do(ctx, raw.B().Exists().Key(redistenant.Prefix(other)+"session").Build()).AsInt64(); n != 1 {
			t.Errorf("crash at %s: another tenant's key was purged", crashAt)
		}
	}
}
