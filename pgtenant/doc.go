// Package pgtenant is a pgx connection pool whose every statement runs inside
// the tenant carried by its context.
//
// A service hands a *[Pool] to its data layer where it would hand a
// *pgxpool.Pool. Each statement then runs with the tenant's schema first on
// the search_path ([SchemaName], then the shared schemas, then pg_temp) and
// the tenant's ID in the RLS setting (app.tenant_id by default), both
// transaction-local: nothing survives on the connection after the statement,
// so the next tenant to receive it starts clean, behind a pooler too.
//
//	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: poolConfig})
//	...
//	ctx = tenant.NewContext(ctx, t) // usually done by tenant.Middleware
//	rows, err := pool.Query(ctx, "SELECT id, title FROM projects")
//
// A call whose context carries no tenant fails with [tenant.ErrNoTenant]
// before any I/O: never "all tenants", never "the previous tenant".
//
// # One round trip
//
// The setting and the statement travel together in one pipeline and one
// implicit transaction. Statements are prepared per (tenant schema, SQL) on
// each connection, parsed after the tenant's search_path is set, so each is
// planned against its own tenant's tables: alternating tenants never forces a
// re-plan, and tenants whose tables differ in column types never trip over a
// shared plan (SQLSTATE 0A000). [Config].StatementCacheCapacity bounds them.
// With QueryExecModeExec or the simple protocol (for a pooler that cannot
// keep prepared statements) nothing is prepared and it is still one round
// trip.
//
// # Transactions
//
// [Pool.Begin] and [Pool.BeginTx] take a connection; BEGIN and the settings
// then travel with the transaction's first statement, in one round trip, so
// a one-statement transaction costs two round trips where plain pgx needs
// three. The settings last until the transaction ends. The returned [Tx] is
// a pgx.Tx, so pgx.BeginFunc and sqlc work unchanged.
//
// # Behind PgBouncer
//
// In transaction pooling mode a server connection cannot keep prepared
// statements: set the pool's DefaultQueryExecMode to pgx.QueryExecModeExec
// (or the simple protocol). Statements are then sent unprepared, the scope
// still in the same round trip and implicit transaction.
//
// # Session use
//
// [Pool.Acquire] hands out a [Conn] with the tenant set for the session, for
// LISTEN/NOTIFY or session locks. It is reset on checkout and on release
// (RESET ALL, RESET ROLE, DISCARD TEMP, UNLISTEN, unlock; never DISCARD ALL),
// and closed instead of reused if the reset fails or a transaction is left
// open. Session use is not safe behind PgBouncer in transaction pooling mode;
// statements and transactions are.
//
// # Roles
//
// [New] refuses a superuser or BYPASSRLS role ([ErrPrivilegedRole]): such a
// role ignores every policy. Connect as a NOSUPERUSER NOBYPASSRLS role that
// owns no tenant table; provisioning and migrations run as the owner.
//
// # Work that belongs to no tenant
//
// [Pool.Unscoped] returns the underlying pgxpool for shared tables. RLS
// policies show it no tenant's rows.
//
// # Temporary tables
//
// Temporary tables belong to the database session, and on the statement path
// one session serves many tenants in turn. pg_temp is last on the search_path
// so a temporary table never shadows a tenant table, but one created on the
// statement path outlives the statement: create them with ON COMMIT DROP
// inside a transaction, or revoke TEMPORARY from the app role if you do not
// use them ([Pool.CopyFrom] needs it).
package pgtenant
