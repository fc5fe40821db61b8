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
// # At a glance
//
// The guarantee: a statement sent with a tenant's context reads and writes
// only what that tenant's schema and RLS scope allow, and leaves nothing on
// the connection that another tenant, [Pool.Unscoped] or the next
// [Pool.Acquire] could observe (a lexer refuses session-state SQL before
// I/O; a server-side backstop checks what the server holds for every text
// the lexer cannot bound). It holds for [Pool], [Tx], batches, CopyFrom,
// [OpenDB]'s *sql.DB and code built on them (sqlc, pgx.BeginFunc, sqlx,
// bun, GORM, ent), with tracers seeing the caller's SQL.
//
// The modes, chosen by the pool's ConnConfig.DefaultQueryExecMode or per
// call: the prepared modes (the default; statements prepared per tenant
// schema and SQL), QueryExecModeExec (nothing prepared, for a transaction
// pooler), the simple protocol (the scope and the statement as one query
// text, the arguments written into it exactly as pgx writes them), and
// Citus mode ([Config].Citus: the scope reaches the worker). The pool picks
// how it sends once, in [New]; a pgx.QueryExecMode passed to one call picks
// that mode's way for the call. In each, the scope and the statement travel
// in one round trip (a statement the backstop checks runs in a block of its
// own, BEGIN to COMMIT, in that same round trip); see "One round trip",
// "Behind PgBouncer" and "Scaling out on Citus".
//
// Where it stops (detailed under "Nothing a statement leaves on a
// connection reaches anyone else"): a statement the lexer bounds is checked
// by its command tag, not by the server; functions, triggers and views run
// what their bodies say; the raw connections of [Tx.Conn] and [Conn.Conn]
// are not checked; behind PgBouncer the backstop closes the client's
// connection, not the pooler's; the role must be NOSUPERUSER NOBYPASSRLS
// ([New] refuses others, see "Roles").
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
// a pgx.Tx that behaves as pgx's does — pgx.BeginFunc, sqlc's WithTx, nested
// Begin (savepoints), Prepare, LargeObjects, SendBatch and CopyFrom work
// unchanged — and a differential test runs random programs through both and
// compares every result: a failed statement aborts the transaction (SQLSTATE
// 25P02 for what follows, pgx.ErrTxCommitRollback from Commit), and a
// statement new on the connection is prepared inside the transaction, never
// in one of its own. One difference: an error in BEGIN itself (an unusable
// TxOptions.BeginQuery) comes from the first statement, not from BeginTx.
//
// # Code you already have
//
//   - sqlc (pgx/v5): a *Pool is sqlc's DBTX and its transactions work with
//     WithTx; scany, pgx.CollectRows and pgx.BeginFunc work unchanged.
//   - database/sql, and sqlx, bun, GORM's postgres driver or ent on top of
//     it: [OpenDB] returns a *sql.DB whose statements and transactions run in
//     the tenant of each call's context, with the same guarantees (sqlx is
//     tested; values scan as through pgx's stdlib).
//   - Tracing: see below; tracelog and OpenTelemetry tracers see the
//     caller's SQL with the tenant in the context.
//
// # A deleted tenant
//
// PostgreSQL skips a search_path entry whose schema does not exist, so a
// request still holding a deleted tenant would otherwise resolve its tables
// in the shared schemas. The scope statement checks the schema
// (regnamespace, no extra round trip) and fails with an error matching
// [ErrTenantSchemaMissing]; the statement does not run.
//
// # Nothing a statement leaves on a connection reaches anyone else
//
// On the statement path (Exec, Query, QueryRow, SendBatch, CopyFrom, [OpenDB])
// and in transactions, one database session serves many tenants in turn, and
// [Pool.Unscoped] after them. Settings are transaction-local, and no state a
// statement or transaction creates is observable afterwards by another
// tenant's statement, by Unscoped, or by the next [Pool.Acquire]; no statement
// can point the tenant setting or the search_path elsewhere. Two layers hold
// this, and the second does not depend on the first.
//
// The lexer classifies each SQL text once (cached per Pool). It skips
// comments and literals, decodes U&"..." identifiers and U&'...' strings
// (with UESCAPE), sees through EXPLAIN [ANALYZE] and into CTEs, and refuses
// with a *[SessionStateError] ([ErrSessionState]) before any I/O: session
// SET, RESET, SET SESSION AUTHORIZATION, set_config(..., false), any write
// of the pool's RLS setting or the search_path (SET LOCAL and set_config(...,
// true) included, in any spelling), UPDATE pg_settings; DECLARE ... WITH
// HOLD; session advisory locks; lastval() and currval(); PREPARE, EXECUTE,
// DEALLOCATE, LISTEN, UNLISTEN, DISCARD, LOAD, DO; temporary objects of every
// kind (TEMP, pg_temp, pg_temp_N, SELECT ... INTO) unless ON COMMIT DROP;
// transaction control in SQL; statements whose effect outlives the session
// (ALTER ROLE/DATABASE ... SET, ALTER SYSTEM, CREATE/ALTER ROLE, GRANT of a
// role, ALTER DEFAULT PRIVILEGES, SECURITY LABEL) and DDL unless
// [Config].AllowDDL — those two also on an Acquired [Conn]. A text it can
// bound (plain reads and writes, calls of the functions it knows) runs as is:
// its command tag is still checked, and a connection reporting a
// session-state command the lexer did not expect is closed.
//
// The server-side backstop verifies every text the lexer cannot bound — a
// call of a function it does not know, EXPLAIN, CALL, COPY, DDL the pool
// allows, anything unfamiliar — by what the server holds, in the same round
// trip. A guard runs after the statement in its transaction: the tenant
// setting and search_path are still the scope's, the role is the session's,
// standard_conforming_strings is on, and the pool role's attributes,
// memberships and role/database settings (pg_db_role_setting) are what they
// were; if not, the transaction is rolled back — the statement's writes
// never commit — and the caller gets a *SessionStateError. A session check
// runs after the transaction ends (on the pool's path the statement runs in
// a block of its own for this; in a Tx it follows COMMIT or ROLLBACK): some
// thirty settings the pool and pgx rely on are the session's own again, and
// the session holds no temporary object, advisory lock, cursor WITH HOLD,
// SQL-level prepared statement or LISTEN. A connection found dirty is
// destroyed, never reused; the statement's result is still the caller's.
//
// Where the guarantee stops, precisely:
//
//   - A statement the lexer bounds is not checked by the server: its
//     guarantee is the lexer and the command tag. Functions, triggers and
//     views of the schema owner run whatever their bodies say (a plpgsql
//     function can call set_config or take a session lock under a SELECT
//     tag), and calling one of the lexer's known functions is not checked;
//     give the app role only code you trust (provision's Audit lists
//     SECURITY DEFINER functions).
//   - A checked statement costs more: a block and three more statements in
//     the same round trip, measured at about 0.3 ms against 0.1 ms for a
//     bounded one in the prepared modes, and 1–5 ms in QueryExecModeExec
//     and the simple protocol, where the server parses and plans the
//     backstop's catalog queries on every call (BENCHMARKS.md, "the
//     server-side backstop"); keep hot statements to what the lexer
//     bounds. Rows of a checked
//     Query reach the caller before the guard runs: a guard failure comes
//     from rows.Err (and Close), as a statement's own error would.
//   - The session check compares the guarded settings listed above, not
//     every GUC; a custom placeholder setting other than the pool's is not
//     compared.
//   - The raw connections of [Tx.Conn] and [Conn.Conn] are neither
//     classified nor checked.
//   - Behind a transaction pooler (PgBouncer) the backstop destroys the
//     client's connection, not the pooler's server connection: state the
//     lexer refuses never gets there, but state only the session check finds
//     can stay on that server connection. Configure the pooler to clean
//     server connections (server_reset_query = DISCARD ALL with
//     server_reset_query_always = 1).
//   - NOTIFY is delivered to whoever listens: it is a message, not state.
//     pg_prepared_statements shows the text (not the data) of statements
//     prepared for other tenants on the same connection.
//
// All of the refused session forms are allowed on a connection from
// [Pool.Acquire], whose session is reset on release. Statements prepared
// with [Tx.Prepare] are deallocated when the transaction ends.
//
// # Tracing
//
// A pgx.QueryTracer, pgx.BatchTracer or pgx.PrepareTracer set as the pool's
// ConnConfig.Tracer (tracelog, otelpgx) sees every statement and batch of
// the Pool, Tx and Conn methods with the caller's SQL and arguments, the
// tenant in its context, and the context it returned carried to the end.
// This holds in every exec mode, the simple protocol included. The pool's
// own statements that go through pgx (the role check, the session reset of
// Acquire) are traced too. CopyFrom is traced by
// pgx as what it runs: the COPY into its staging table and the INSERT that
// moves the rows. A transaction is traced as pgx traces its own: "begin"
// (with its options) before the first statement although it travels with
// it, then the statements, savepoints and "commit" or "rollback" — a test
// runs one program through pgtenant and plain pgx with a recording tracer
// and compares what each traced.
//
// # Noisy neighbours: per-tenant budgets
//
// [Config.TenantLimits] bounds what one tenant takes of the pool. Each
// tenant may hold at most Limits.MaxConns connections at once (by default
// a fair share, max(1, MaxConns/4)); every call path counts — statements,
// batches, transactions, OpenDB, [Pool.Acquire] — from the moment it takes
// a connection until it returns it. A call over its tenant's budget, or
// one that finds the pool full, waits in a queue that serves the waiting
// tenants in turn (round robin over tenants, not arrival order), so a
// tenant with 32 callers waiting does not stand ahead of a tenant with one;
// the wait is bounded by the call's context, or with [LimitFail] a call
// over its budget gets a *[LimitError] at once. Limits.StatementTimeout
// is set with set_config('statement_timeout', ..., true) in the scope
// statement itself: no extra round trip, and it ends with the transaction.
// Tiers come from TenantLimits.For, called for every call (make it a map
// lookup). Connections out through [Pool.Unscoped] are not bounded, but
// count against the pool's total.
//
// [Config.Observer] is told of every connection a tenant takes (with the
// time it waited) and returns; package tenantotel turns that into metrics.
// [Config.TagSessions] sets application_name to [SessionTag] in the same
// scope statement, so pg_stat_activity (and log_line_prefix's %a) shows
// which tenant each backend is serving while it serves it.
//
// # Placements: a Router over several databases
//
// When tenants live in several databases (provision's placements: pool,
// bridge, silo), a [Router] holds one Pool per placement and sends each
// call to the pool of its tenant's placement, which a [Locator] names
// (provision's Registry). A *Router is a [DB], like a *Pool: statements,
// batches, transactions, Acquire, CopyFrom and [OpenDB] work the same, with
// the placement Pool's guarantees. A tenant whose placement has no pool in
// the Router, or that the Locator cannot place, fails with a
// *[PlacementError] before any I/O; while its cut-over to another placement
// runs, calls wait up to RouterConfig.MoveWait, then fail with
// [ErrTenantMoving]. Placements are cached per tenant (RouterConfig.TTL);
// provision's Registry.Watch with the Router as its Invalidator drops them
// as the registry changes, and a write that an old placement's fence
// refuses ([FenceCode]) drops that tenant's. The lookup costs ~0.1 µs and
// no allocation (BenchmarkRouterLookup).
//
// # Behind PgBouncer
//
// In transaction pooling mode a server connection cannot keep prepared
// statements: set the pool's DefaultQueryExecMode to pgx.QueryExecModeExec
// (or the simple protocol). Statements are then sent unprepared, the scope
// still in the same round trip and implicit transaction. In
// QueryExecModeExec they take the same path as prepared ones, as
// parameterised text (arguments encoded as pgx encodes them in that mode),
// batches included, and a transaction's BEGIN still travels with its first
// statement. On the simple protocol the scope, the statement and whatever
// else the round trip carries are one query text (arguments written into it
// as pgx writes them; a test fuzzes our text against pgx's), except that a
// transaction's BEGIN and scope go ahead in a message of their own with its
// first statement — PostgreSQL parses a whole query text before running any
// of it, so a syntax error in the statement would otherwise undo the BEGIN
// that pgx's transaction has. A pgx.QueryExecMode passed to one call is
// honoured for that call on the same path. In QueryExecModeExec the server parses and plans the scope
// statement with every statement: measured (BENCHMARKS.md), pgtenant costs
// what the least RLS-respecting client costs — a set_config and the
// statement in one batch — and about 1.4× plain pgx without RLS.
//
// # Session use
//
// [Pool.Acquire] hands out a [Conn] with the tenant set for the session, for
// LISTEN/NOTIFY, session locks, cursors WITH HOLD and the like. It is reset
// on checkout and on release (CLOSE ALL, UNLISTEN *, advisory unlock, RESET
// ALL, RESET ROLE, DISCARD TEMP, DISCARD SEQUENCES, SQL-level prepared
// statements deallocated; never DISCARD ALL), and the notifications pgx has
// already buffered for the connection are dropped, so the next holder's
// WaitForNotification sees none of them. A connection whose reset fails or
// that is released inside a transaction is closed instead of reused.
// Statements you prepare by name on [Conn.Conn] yourself stay prepared (they
// re-plan under the next user's search_path). Session use is not safe behind
// PgBouncer in transaction pooling mode; statements and transactions are.
//
// # Roles
//
// [New] refuses a superuser or BYPASSRLS role ([ErrPrivilegedRole]): such a
// role ignores every policy; and a role with CREATEROLE, CREATEDB or
// REPLICATION (a *[PrivilegedRoleError] names the attribute; CREATEROLE can
// grant itself the owner's role) unless [Config].AllowPrivilegedRole. On
// every new connection it also refuses settings the role or the database
// gives its sessions that the pool relies on — search_path, the RLS
// setting, role, default_transaction_read_only on,
// standard_conforming_strings off, row_security off, a non-UTF8
// client_encoding, statement/lock/idle timeouts under a second — with a
// *[RoleSettingError] ([ErrRoleSetting]) naming the setting, its scope and
// the fix. Connect as a NOSUPERUSER NOBYPASSRLS role that owns no tenant
// table and is a member of no other role; provisioning and migrations run as
// the owner (provision's Audit reports an app role that is privileged, a
// member of a role, or carries such settings).
//
// Each statement's scope also resets the role for its transaction (SET ROLE
// left on a connection cannot carry into a tenant's statement) — unless the
// pool's role is a member of no role, which New checks: such a role cannot
// SET ROLE at all, and the scope statement is one call shorter.
//
// # Work that belongs to no tenant
//
// [Pool.Unscoped] returns the underlying pgxpool for shared tables. RLS
// policies show it no tenant's rows.
//
// # Temporary tables
//
// pg_temp is last on the search_path, so a temporary table never shadows a
// tenant table, even one left through a raw connection. On the statement
// path and in transactions, create them with ON COMMIT DROP; [Tx.CopyFrom]
// stages rows in one and needs the TEMPORARY privilege.
//
// # Scaling out on Citus
//
// On a Citus cluster (12 or later) each tenant schema can be a distributed
// schema: its tables live together on one worker node, and Citus routes
// every statement that stays in the schema to that worker whole — the
// SDK's own model, so application code does not change. provision creates
// tenant schemas as distributed schemas when the database has the citus
// extension (the registry schema tenancy never is, whatever
// citus.enable_schema_based_sharding says), and migrate runs tenant chains
// on them (DDL goes one statement per query string, as Citus forwards DDL
// text to the workers).
//
// A setting made with set_config stays on the coordinator, so RLS on a
// worker would see no tenant: reads return no rows, writes are refused. In
// Citus mode ([Config.Citus]; on by default when the extension is
// installed) every statement runs in an explicit block — BEGIN, the scope,
// SET LOCAL citus.propagate_set_commands = 'local', SET LOCAL of the tenant
// setting, the statement, COMMIT — still written at once, one round trip
// from the client; Citus forwards the SET LOCAL to each worker the
// transaction reaches. Batches run in one such block; a transaction's BEGIN
// carries the SET LOCALs; a block that failed is rolled back before its
// connection is reused. This covers [Pool], [Tx], [Conn] (each statement in a
// block of its own; transaction control in SQL is refused there, use
// [Conn.Begin]), [Pool.SendBatch], [OpenDB], explicit per-call exec modes,
// QueryExecModeExec and the prepared modes. Where it stops:
//
//   - A pool on the simple protocol is refused by [New] in Citus mode:
//     Citus forwards a SET LOCAL with the whole query message it came in as
//     "the SET command" to the workers. A single call with
//     pgx.QueryExecModeSimpleProtocol works: its BEGIN, scope and SET
//     LOCALs go ahead as a batch of their own, then the statement's text
//     (two round trips).
//   - [Tx.CopyFrom] sends multi-row INSERTs instead of COPY (Citus moves
//     staged rows with COPY on the worker, which RLS refuses).
//   - Statements sent on [Conn.Conn] directly, outside a transaction, do not
//     carry the tenant to the workers (they fail closed); those sent on
//     [Tx.Conn] do.
//   - migrate's goose path (Go migrations, NO TRANSACTION files) sets the
//     tenant for the session only: DDL works, but statements that read or
//     write tenant rows there see no tenant on the workers. Keep seed data in
//     SQL files the fleet runner applies (it uses the block).
//   - serial columns cannot draw values on a worker: provisioning and
//     migrations refuse them as everywhere (use GENERATED ... AS IDENTITY on
//     bigint).
//
// Shared data that every tenant joins with belongs in reference tables
// (create_reference_table), copied to every worker, so a tenant's joins stay
// on its worker. Move a tenant between workers with
// citus_schema_move(schema, node, port, shard_transfer_mode =>
// 'block_writes'): writes to that tenant wait until the move ends, nothing
// fails (internal/citustest's TestMoveUnderLoad). The logical-replication
// modes ('auto', 'force_logical') move an idle tenant in about a second
// (TestLogicalMoveOfAnIdleTenant) but do not finish while the tenant is
// written: cancelled after 30 s under four writers, such a move left a
// replication slot on the source worker until CALL
// citus_cleanup_orphaned_resources() removed it.
//
// Costs, measured on one machine with a coordinator and two workers on
// loopback, against a plain PostgreSQL with the same settings
// (BENCHMARKS.md, "Citus"): with every server durable, a point read through
// pgtenant on the coordinator takes 8.2× the same read on plain PostgreSQL
// and 2.1× raw pgx's schema-qualified read on the coordinator without RLS
// (most of the cost is the cluster's routing; the block adds a remote BEGIN
// and COMMIT on the worker), a point write 3.2× plain and 1.6× raw; with
// fsync and synchronous_commit off everywhere, a read 5.3× and 1.9×, a
// write 6.3× and 2.0×. Creating a tenant takes 3.8× plain (3.3× with fsync
// off).
//
// The Citus tests live in internal/citustest, whose documentation says how
// to build a cluster to run them on.
package pgtenant
