package migrate

import (
	"errors"
	"fmt"

	"github.com/tenancykit/tenancy/tenant"
)

// The errors of this package. A tenant's failure is a *[MigrationError]
// (in TenantResult.Err and Report.Err) that wraps the cause; match the
// causes below with errors.Is.

// ErrInvalidConfig is returned by [New] for an unusable [Config].
var ErrInvalidConfig = errors.New("migrate: invalid configuration")

// ErrSequenceDefault is matched by a tenant's error when a migration made a
// tenant table with a column whose default draws from a sequence (serial,
// bigserial, nextval): the app role holds no sequence privileges, since
// sequences are beyond row level security. The message names each
// table.column; use GENERATED ALWAYS AS IDENTITY or gen_random_uuid().
var ErrSequenceDefault = errors.New("migrate: columns with a sequence default")

// ErrSharedTwin is matched by a tenant's error when a migration made a
// tenant table named like a table or view of the shared schema public: a
// tenant whose migration is missing would silently reach the shared one.
var ErrSharedTwin = errors.New("migrate: tenant tables named like a shared table")

// MigrationError is a failed migration of one schema: the tenant (zero for
// the shared schema), the version that failed and the cause. Through goose,
// earlier migrations of the schema stay applied (each runs in its own
// transaction); through UpAll's fleet runner (TenantResult.ViaGoose false)
// none of the tenant's pending migrations stays applied (they share one).
type MigrationError struct {
	Tenant  tenant.Tenant
	Version int64
	Err     error
}

func (e *MigrationError) Error() string {
	if e.Tenant.IsZero() {
		return fmt.Sprintf("migrate: shared schema: version %d: %v", e.Version, e.Err)
	}
	return fmt.Sprintf("migrate: tenant %s: version %d: %v", e.Tenant, e.Version, e.Err)
}

// Unwrap returns the cause.
func (e *MigrationError) Unwrap() error { return e.Err }

// ErrMissingTenantColumn is matched by a tenant's error when a migration
// made a tenant table without a tenant_id column. Through goose the table is
// left without grants (the app role cannot reach it); through the fleet
// runner the tenant's migrations are rolled back. The message names it.
var ErrMissingTenantColumn = errors.New("migrate: tables without a tenant_id column")

// ErrForeignPolicy is matched by a tenant's error when a migration made a
// tenant table that carries row level security policies of its own: another
// permissive policy would widen access, so the table is not confined or
// granted (the fleet runner rolls the tenant's migrations back). The message
// names it.
var ErrForeignPolicy = errors.New("migrate: tables with policies of their own")

// ErrSchemaMissing is matched by a tenant's error when the tenant's schema
// does not exist: provision the tenant first.
var ErrSchemaMissing = errors.New("migrate: tenant schema does not exist")

// ErrSchemaLocked is matched by a tenant's error when ctx ended while
// another migration of the same schema (another process's UpAll, say) held
// its lock. The error wraps ctx's too.
var ErrSchemaLocked = errors.New("migrate: schema locked by another migration")

// ErrNoTenantSource is returned by the fleet operations (UpAll, Status,
// Refresh) when called with a nil TenantSource.
var ErrNoTenantSource = errors.New("migrate: no TenantSource: pass the fleet to list, e.g. a *provision.Registry")

// ErrNoTenantChain is matched by the error of a tenant migration when
// Config.Tenant is nil.
var ErrNoTenantChain = errors.New("migrate: no tenant migrations configured")
