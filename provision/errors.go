package provision

import (
	"errors"
	"fmt"

	"github.com/tenancykit/tenancy/tenant"
)

var (
	// ErrTenantExists is returned by [Registry.Create] when a live tenant
	// already has the slug (or the ID).
	ErrTenantExists = errors.New("provision: tenant already exists")
	// ErrTenantNotFound is returned by [Registry.Get], [Registry.Suspend],
	// [Registry.Resume], [Registry.Delete] and [Registry.LookupTenant] when no
	// live tenant has the slug or ID. It matches tenant.ErrNotFound, so the
	// tenant middleware answers it with 404.
	ErrTenantNotFound = fmt.Errorf("provision: %w", tenant.ErrNotFound)
	// ErrTenantSuspended is returned by [Registry.LookupTenant] for a
	// suspended tenant. It matches tenant.ErrSuspended, so the tenant
	// middleware answers it with 403.
	ErrTenantSuspended = fmt.Errorf("provision: %w", tenant.ErrSuspended)
	// ErrInvalidTransition is matched by the error of a lifecycle call the
	// tenant's status does not allow (resuming an active tenant, say).
	ErrInvalidTransition = errors.New("provision: status does not allow this")
	// ErrMissingTenantColumn is matched by the error of [Registry.Create]
	// when the builder made tables without a tenant_id column; the message
	// lists them.
	ErrMissingTenantColumn = errors.New("provision: tables without a tenant_id column")
	// ErrSequenceDefault is matched by the error of [Registry.Create] when
	// the builder made a column whose default draws from a sequence (serial,
	// bigserial, nextval): the app role holds no sequence privileges, since
	// sequences are beyond row level security. The message names each
	// table.column; use GENERATED ALWAYS AS IDENTITY or gen_random_uuid().
	ErrSequenceDefault = errors.New("provision: columns with a sequence default")
	// ErrSharedTwin is matched by the error of [Registry.Create] when the
	// builder made a table named like a table or view of the shared schema
	// public: a tenant whose table went missing would silently reach the
	// shared one. The message names both.
	ErrSharedTwin = errors.New("provision: tenant tables named like a shared table")
	// ErrForeignPolicy is matched by the error of [Registry.Create] when the
	// builder made a table whose policies are not the tenant policy by
	// meaning: one named tenant_isolation with another expression, command
	// or roles, or another permissive policy (which would widen access;
	// RESTRICTIVE ones are allowed). Create then leaves nothing behind. The
	// message names each table and the policy found.
	ErrForeignPolicy = errors.New("provision: tables whose policies are not the tenant policy")
	// ErrInvalidName is matched by the error of [Registry.Create] and
	// [Registry.Update] for a display name longer than [MaxNameLen] bytes,
	// not valid UTF-8, or holding a NUL character.
	ErrInvalidName = errors.New("provision: invalid tenant name")
	// ErrInvalidConfig is returned by [New] for an unusable [Config]; the
	// message names the field.
	ErrInvalidConfig = errors.New("provision: invalid configuration")
)

// StepError says which step of a lifecycle call failed. Create rolls every
// step back, so after a StepError from Create nothing of the tenant remains.
type StepError struct {
	// Op is "create" or "delete".
	Op string
	// Slug is the tenant's slug.
	Slug string
	// Step is the step that failed, e.g. "build schema" or "drop tables".
	Step string
	// Err is the cause.
	Err error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("provision: %s tenant %q: %s: %v", e.Op, e.Slug, e.Step, e.Err)
}

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }
