// Package provision keeps the tenant registry and runs each tenant's
// lifecycle: create, suspend, resume, delete, and an audit of everything that
// would weaken isolation.
//
// It runs as the owner role. The app role, the one pgtenant connects as,
// gets only USAGE on each tenant schema and DML on its tables and sequences.
//
//	reg, err := provision.New(ctx, provision.Config{
//		Owner:   ownerPool,           // a *pgxpool.Pool connected as the owner role
//		AppRole: "app",               // the role pgtenant connects as
//		Builder: provision.DDL(       // or the migrate package's tenant chain
//			`CREATE TABLE projects (id bigserial PRIMARY KEY, tenant_id text NOT NULL, title text)`,
//		),
//		Purger: redisClient,          // optional: a *redistenant.Client
//	})
//	rec, err := reg.Create(ctx, provision.Spec{Slug: "acme", Name: "Acme Inc."})
//
// # Create
//
// [Registry.Create] is one transaction that leaves either a complete,
// isolated, usable tenant or nothing: it registers the tenant in
// tenancy.tenants, creates its schema "tenant_<slug>" (a clash is an error,
// never IF NOT EXISTS), builds it, and for every table requires a tenant_id
// column, enables and forces row level security, adds one policy with USING
// and WITH CHECK on the setting (wrapped in nullif so that an empty setting matches
// nothing, cast to the column's type), sets the column's default to the
// current tenant so inserts need not name it, and grants the app role. The
// generated SQL is checked by golden files in testdata. A failure returns a
// *[StepError] naming the step.
//
// # The registry
//
// [Registry.Get], [Registry.List] (keyset pagination by slug, filter by
// status), [Registry.Suspend] and [Registry.Resume]. [Registry.LookupTenant]
// implements tenant.Lookup for the middleware: active tenants only,
// [ErrTenantNotFound] (404) and [ErrTenantSuspended] (403). IDs and slugs of
// live tenants share one namespace, enforced by a primary key
// (tenancy.tenant_names), so a lookup key names at most one tenant. The
// registry creates and upgrades its own tables, versioned, under an advisory
// lock.
//
// Every status change (Create, Suspend, Resume, Delete) is announced with
// NOTIFY on [WatchChannel] in the transaction that makes it.
// [Registry.Watch] listens on a dedicated connection, reconnecting with
// backoff, and invalidates every name of the changed tenant in a
// tenant.Cache: run one per cache, and a suspension is refused by every
// instance of a service within milliseconds instead of at the end of the
// cache's TTL.
//
// # Delete
//
// [Registry.Delete] marks the tenant deleting, drops its tables in batches
// (within max_locks_per_transaction however many there are), drops the
// schema, purges the tenant's Redis namespace, and marks the row deleted,
// kept as a tombstone. Every step can be rerun after a crash.
//
// # Shared tables
//
// With Mode pgtenant.SharedTables, tenants share Config.SharedTables and only
// row level security separates them: Create registers the tenant and makes
// sure the shared tables carry the policy; Delete deletes the tenant's rows.
//
// # Audit
//
// [Registry.Audit] reports tenant tables without RLS enabled, forced or
// their policy, extra policies, an app role that is privileged or owns a
// tenant table, PUBLIC CREATE on a schema, views without security_invoker,
// SECURITY DEFINER functions, registry rows without a schema and schemas
// without a registry row, and unique indexes on shared tables that omit
// tenant_id. Each [Finding] names the object and the fix.
package provision
