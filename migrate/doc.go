// Package migrate runs goose migrations for the shared schema and for every
// tenant schema: two chains, each schema with its own version table, so a
// deploy migrates the fleet and a broken tenant neither stops nor corrupts
// the others.
//
//	m, err := migrate.New(migrate.Config{
//		ConnConfig: ownerConnConfig, // the owner role
//		Shared:     sharedFS,        // e.g. an embed.FS of goose SQL files
//		Tenant:     tenantFS,
//		AppRole:    "app",
//	})
//	_, err = m.UpShared(ctx)
//	report, err := m.UpAll(ctx, registry) // the fleet, e.g. a *provision.Registry; report.Err() joins the failed tenants
//
// UpAll refuses (ErrSharedPending) while the shared chain has a migration
// not yet applied; [Migrator.SharedStatus] says which.
//
// # How a tenant schema is migrated
//
// Each worker has one connection of its own (never the application's pool:
// a session SET there would leak). For each schema it sets the search_path
// to the schema (then public) and the RLS setting to the tenant, and runs
// goose with the version table "<schema>.goose_db_version" and an advisory
// lock of that schema's own, so two deploys never apply one migration twice
// while different schemas never wait on one lock. Migrations run in their
// own transactions (or none, with -- +goose NO TRANSACTION, e.g. CREATE
// INDEX CONCURRENTLY), so a failure leaves the tenant at its last good
// version: [MigrationError] names the tenant, the version and the SQL error,
// and a rerun finishes the job.
//
// Tables a tenant migration creates get the treatment provision gives a new
// tenant: row level security enabled and forced, the tenant policy, the
// tenant_id default and grants to the app role. A table without tenant_id
// is not granted (the app role cannot read it) and fails the tenant.
//
// After every migration each table of the schema is checked against what
// the server holds, not against names: the tenant policy must mean what
// tenancy installs (FOR ALL, permissive, USING and WITH CHECK the tenant
// match pinned to the schema's tenant, compared as pg_get_expr deparses
// them), and no other permissive policy may sit beside it. A migration that
// says ALTER POLICY tenant_isolation ... USING (true), or creates a table
// with a tenant_isolation policy of its own, or adds CREATE POLICY
// everyone ... USING (true), fails the tenant with [ErrForeignPolicy]
// naming the table and the policy found: the fleet runner rolls the
// tenant's migrations back; on goose's path, where goose has committed
// them, the app role loses its privileges on the table, so it fails closed
// until a migration restores the policy. RESTRICTIVE policies are allowed.
// Row level security turned off by a migration is turned on and forced
// again.
//
// # A fleet
//
// [Migrator.Status] reads every tenant's version in a few queries, without a
// goose provider per tenant, and [Migrator.UpAll] skips the tenants that are
// current the same way, then migrates the rest with Config.Concurrency
// workers, reporting progress through Config.Progress (done/total, failures,
// rate and ETA, for a progress bar or a log line) and slog.
//
// UpAll's fleet runner applies a tenant's pending migrations itself when
// they are all goose SQL files that run in a transaction: the migrations'
// statements, split exactly as goose splits them, goose's version rows, the
// securing step and the version summary go to the server as one transaction
// — in one round trip where the database has provision's registry (whose
// tenancy.secure_schema confines new tables in the server), in two
// otherwise (the tables are listed in the first, confined by rls.Plan's
// statements, as goose's path does, in the second). A tenant that fails
// there keeps none of its pending migrations — not a prefix, as with goose —
// and a rerun finishes it. goose reads the result as its own: the version
// table is goose's, with goose's rows, and goose run by hand afterwards
// agrees (TestRunnerMatchesGoose compares schemas built both ways). goose
// itself still runs Go migrations, NO TRANSACTION and ENVSUB files, files
// with transaction control (COMMIT, SAVEPOINT, …) or with several SQL
// statements in one goose statement, schemas
// whose version table moved since UpAll's Status read it (goose run by
// hand: goose then decides, and reports out-of-order versions as it always
// does).
// TenantResult.ViaGoose says which path a tenant took. UpTenant, UpTo and
// DownTo always use goose.
//
// # Errors
//
// A tenant's failure is a *[MigrationError] (tenant, version, cause) in
// TenantResult.Err and Report.Err. Its cause matches, with errors.Is, one of
// [ErrMissingTenantColumn], [ErrForeignPolicy], [ErrSequenceDefault],
// [ErrSharedTwin], [ErrSchemaMissing], [ErrSchemaLocked] or
// [ErrNoTenantChain], or is the SQL error of the migration that failed.
//
// # Citus
//
// On a database with the citus extension, the fleet runner's transaction is
// an explicit block that also sets the tenant with SET LOCAL, which Citus
// forwards to the worker holding the schema (seed rows pass RLS there); a
// goose statement that holds several SQL statements (a StatementBegin/End
// block) is sent one SQL statement per query string by the runner instead of
// going to goose, since Citus forwards each DDL statement's text to the
// workers and fails on a string of several; and goose's version table is
// made with a bigint identity (an integer identity cannot draw values on a
// worker). goose's own path (Go migrations, NO TRANSACTION, ENVSUB) sets the
// tenant for the session only, which does not reach the workers: DDL runs,
// statements on tenant rows there do not. See "Scaling out on Citus" in
// package pgtenant.
package migrate
