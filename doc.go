// Package tenancy is an embeddable SDK that gives a Go service strict
// multi-tenant isolation on PostgreSQL and Redis. This package holds no code:
// it is the tour. Import the small packages you need.
//
// # Packages
//
//   - [github.com/tenancykit/tenancy/tenant]: the Tenant value and its
//     validation, context helpers, net/http middleware with resolvers
//     (header, subdomain, path) and a caching lookup, and a log/slog handler
//     that stamps every record with the tenant. Standard library only.
//   - [github.com/tenancykit/tenancy/pgtenant]: a pgx pool where every
//     statement runs in the tenant's scope (its schema on the search_path and
//     the row level security setting), transaction-local so nothing survives
//     on a pooled connection, in one round trip.
//   - [github.com/tenancykit/tenancy/redistenant]: a rueidis client that
//     confines every key, channel and pattern to the tenant's namespace, on a
//     single server or a cluster.
//   - [github.com/tenancykit/tenancy/provision]: the tenant registry and
//     lifecycle (create, suspend, resume, delete, audit).
//   - [github.com/tenancykit/tenancy/migrate]: goose migrations for the shared
//     schema and every tenant schema, in parallel and resumable.
//
// The examples directory holds runnable servers to copy: examples/saas, a
// multi-tenant HTTP API, and examples/worker, a tenant-aware job worker.
//
// # A request, end to end
//
// The middleware resolves the tenant of an HTTP request and puts it in the
// request's context. Every data call made with that context is confined to
// the tenant; a call made with a context that carries no tenant fails with
// [github.com/tenancykit/tenancy/tenant.ErrNoTenant] — never "all tenants",
// never "the previous tenant".
//
// # Isolation in depth
//
// Each layer holds on its own: a schema per tenant; row level security
// (ENABLE + FORCE, USING + WITH CHECK, pinned per schema to its tenant) on a
// tenant_id column; an application
// role that cannot bypass RLS and owns no tenant table; transaction-local
// settings, so a pooled connection (or PgBouncer in transaction mode) never
// carries one tenant's state to the next; and Redis keys prefixed with the
// tenant's hash tag.
package tenancy
