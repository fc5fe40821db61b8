// Package citustest holds the integration tests that run Tenancy on a Citus
// cluster: provisioning distributed tenant schemas, pgtenant's statements,
// transactions, batches and sessions reaching the workers with the tenant,
// migrations, and moving a tenant between workers under load. They run when
// TENANCY_CITUS_URL names the admin URL of a coordinator with at least one
// worker, and are skipped otherwise (there is no Citus package on Debian, so
// CI cannot run them). The pgtenant package documentation, "Scaling out on
// Citus", says how to build such a cluster.
package citustest
