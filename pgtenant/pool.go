package pgtenant

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/internal/rolecheck"
	"github.com/tenancykit/tenancy/tenant"
)

// Pool is a pgx connection pool whose every statement runs inside the tenant
// carried by its context. Hand it to a data layer where a *pgxpool.Pool would
// go: it has the same methods, and satisfies sqlc's DBTX interface and
// pgx.BeginFunc's.
//
// A call whose context carries no tenant returns [tenant.ErrNoTenant] before
// any I/O. It is safe for concurrent use.
type Pool struct {
	pool     *pgxpool.Pool
	cfg      settings
	prepared bool     // the connections prepare statements (not Exec/simple mode)
	simple   bool     // QueryExecModeSimpleProtocol: statements go through pgx as text
	conns    sync.Map // *pgx.Conn -> *connState
	scopes   scopeCache
	classes  classCache
	// The tracers of the pool's ConnConfig, called with the caller's SQL on
	// the paths that bypass pgx's own calls (nil when not implemented).
	// noRoleReset drops set_config('role', 'none') from the scope
	// statement: set on the first connection when the pool's role is a
	// member of no role (see learnRole).
	noRoleReset atomic.Bool
	roleMu      sync.Mutex
	role        *poolRole

	// citus: Citus mode (see CitusMode), decided in New before any
	// statement runs.
	citus bool
	// bs: the server-side backstop's statements (backstop.go).
	bs backstop

	qt pgx.QueryTracer
	pt pgx.PrepareTracer
	bt pgx.BatchTracer
}

// New creates a Pool from cfg and checks its role: a role that is a
// superuser or has BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION is refused
// with a *[PrivilegedRoleError] unless cfg.AllowPrivilegedRole is set; a role
// whose new connections inherit (pg_db_role_setting) a setting the pool
// relies on is refused with a *[RoleSettingError] (see [ErrRoleSetting]).
func New(ctx context.Context, cfg Config) (*Pool, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: s}
	p.classes.opts = classOpts{setting: s.setting, allowDDL: s.allowDDL}
	p.bs = newBackstop(s.setting)
	pc := cfg.PoolConfig.Copy()
	p.qt = pc.ConnConfig.Tracer
	p.pt, _ = pc.ConnConfig.Tracer.(pgx.PrepareTracer)
	p.bt, _ = pc.ConnConfig.Tracer.(pgx.BatchTracer)
	switch pc.ConnConfig.DefaultQueryExecMode {
	case pgx.QueryExecModeExec:
	case pgx.QueryExecModeSimpleProtocol:
		p.simple = true
	default:
		p.prepared = true
	}
	userAfterConnect, userBeforeClose := pc.AfterConnect, pc.BeforeClose
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if userAfterConnect != nil {
			if err := userAfterConnect(ctx, c); err != nil {
				return err
			}
		}
		// Nothing tenant-specific happens here: another tenant may be the
		// first to receive this connection.
		if err := p.learnRole(ctx, c); err != nil {
			return err
		}
		if p.prepared {
			sd, err := c.Prepare(ctx, scopeStmt, p.scopeSQL())
			if err != nil {
				return fmt.Errorf("pgtenant: prepare scope statement: %w", err)
			}
			p.state(c).scopeSD = sd
		}
		return p.learnBaseline(ctx, c)
	}
	pc.BeforeClose = func(c *pgx.Conn) {
		p.conns.Delete(c)
		if userBeforeClose != nil {
			userBeforeClose(c)
		}
	}
	p.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgtenant: %w", err)
	}
	if err := p.checkRole(ctx); err != nil {
		p.pool.Close()
		return nil, err
	}
	return p, nil
}

// poolRole is what the first connection learns of the pool's role.
type poolRole struct {
	name          string
	super, bypass bool
	// member: a member of another role, so it could SET ROLE to it.
	member bool
	// citus: the citus extension is installed in the database.
	citus bool
	// attrs: CREATEROLE, CREATEDB, REPLICATION (rolecheck.Attributes).
	attrs [3]bool
	// settings: the role and database settings its connections inherit.
	settings []rolecheck.Setting
}

// learnSQL reads the pool's role, its attributes and the settings its
// connections inherit, in one simple-protocol message: its own transaction
// lifts the timeouts a role setting may have made too short for it, and it
// needs neither standard_conforming_strings nor pgx's sanitizer.
var learnSQL = `BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0;
	SELECT rolname, rolsuper, rolbypassrls,
			EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid),
			` + rls.CitusInstalled + `, rolcreaterole, rolcreatedb, rolreplication
		FROM pg_catalog.pg_roles r WHERE rolname = session_user;
	` + rolecheck.SettingsSQL("session_user") + `;
	COMMIT`

// learnRole reads, on every new connection before anything else of the
// pool's runs on it, the role the pool's statements run as and the role and
// database settings the connection started with, and refuses the connection
// (so New, or the acquire that made it) when either is unsafe: a setting
// planted after New reaches no statement. The first connection's answer is
// kept: a role that is a member of no other role cannot SET ROLE to
// anything but itself, so no statement can have left another role on its
// connections, and the scope statement leaves out the role reset
// (noRoleReset). A superuser keeps it.
func (p *Pool) learnRole(ctx context.Context, c *pgx.Conn) error {
	r, err := readRole(ctx, c.PgConn())
	if err != nil {
		// A role setting may itself be why (a statement_timeout of 1 ms
		// cancels even this): ask again on a connection of our own whose
		// startup parameters override the role's timeouts, and name the
		// setting if it is one.
		cfg := c.Config().Copy()
		cfg.Tracer = nil
		for _, g := range []string{"statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"} {
			cfg.RuntimeParams[g] = "0"
		}
		if side, serr := pgx.ConnectConfig(ctx, cfg); serr == nil {
			sr, serr := readRole(ctx, side.PgConn())
			_ = side.Close(ctx)
			if serr == nil {
				if refused := p.refuseRole(&sr); refused != nil {
					return refused
				}
			}
		}
		return fmt.Errorf("pgtenant: check the role: %w", err)
	}
	p.roleMu.Lock()
	if p.role == nil {
		p.role = &r
		p.noRoleReset.Store(!r.member && !r.super)
	}
	p.roleMu.Unlock()
	return p.refuseRole(&r)
}

// readRole runs learnSQL.
func readRole(ctx context.Context, c *pgconn.PgConn) (poolRole, error) {
	res, err := c.Exec(ctx, learnSQL).ReadAll()
	if err != nil {
		return poolRole{}, err
	}
	if len(res) != 6 || len(res[3].Rows) != 1 || len(res[3].Rows[0]) != 8 {
		return poolRole{}, errors.New("unexpected reply")
	}
	row := res[3].Rows[0]
	r := poolRole{name: string(row[0]), super: pgTrue(row[1]), bypass: pgTrue(row[2]), member: pgTrue(row[3]), citus: pgTrue(row[4]),
		attrs: [3]bool{pgTrue(row[5]), pgTrue(row[6]), pgTrue(row[7])}}
	for _, s := range res[4].Rows {
		r.settings = append(r.settings, rolecheck.Setting{Scope: string(s[0]), Name: string(s[1]), Value: string(s[2])})
	}
	return r, nil
}

// pgTrue reads a boolean in PostgreSQL's text format.
func pgTrue(b []byte) bool { return string(b) == "t" }

// refuseRole returns the *RoleSettingError or *PrivilegedRoleError for r,
// or nil when the pool may use it.
func (p *Pool) refuseRole(r *poolRole) error {
	for _, s := range r.settings {
		if why := rolecheck.Unsafe(s, p.cfg.setting); why != "" {
			return &RoleSettingError{Role: r.name, Scope: s.Scope, Name: s.Name, Value: s.Value, Why: why}
		}
	}
	if p.cfg.allow {
		return nil
	}
	switch {
	case r.super:
		return &PrivilegedRoleError{Role: r.name, Attribute: "SUPERUSER", Why: "it bypasses row level security"}
	case r.bypass:
		return &PrivilegedRoleError{Role: r.name, Attribute: "BYPASSRLS", Why: "it bypasses row level security"}
	}
	for i, a := range rolecheck.Attributes {
		if r.attrs[i] {
			return &PrivilegedRoleError{Role: r.name, Attribute: a.Name, Why: a.Why}
		}
	}
	return nil
}

// checkRole makes the pool's first connection, which learns the role and
// refuses it if it is unsafe (learnRole), and decides Citus mode.
func (p *Pool) checkRole(ctx context.Context) error {
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		var pe *PrivilegedRoleError
		var se *RoleSettingError
		switch {
		case errors.As(err, &pe):
			return pe
		case errors.As(err, &se):
			return se
		}
		return fmt.Errorf("pgtenant: %w", err)
	}
	c.Release()
	p.roleMu.Lock()
	r := p.role
	p.roleMu.Unlock()
	if r != nil {
		p.citus = p.cfg.citus == CitusOn || p.cfg.citus == CitusAuto && r.citus
	}
	switch {
	case r == nil:
		return errors.New("pgtenant: the pool's role was not learnt")
	case p.citus && p.simple:
		return fmt.Errorf("%w: Citus mode (%v) cannot use QueryExecModeSimpleProtocol: the tenant's SET LOCAL would share a query message with other statements, and Citus forwards the whole message to the workers; use QueryExecModeExec behind a pooler, or a prepared mode", ErrInvalidConfig, p.cfg.citus)
	}
	return nil
}

// check classifies sql and refuses it, before any I/O, if it would leave
// state on the session of a connection that other tenants reuse.
func (p *Pool) check(sql string) (*class, error) {
	c := p.classes.classify(sql)
	if c.refused != "" {
		return nil, &SessionStateError{Construct: c.refused, Instead: c.instead, SQL: sql}
	}
	return c, nil
}

// prepareCall does what every statement-path call does before any I/O:
// require a tenant, apply query rewriters, classify the SQL.
func (p *Pool) prepareCall(ctx context.Context, sql string, args []any) (scope, string, []any, []any, *class, error) {
	sc, err := p.require(ctx)
	if err != nil {
		return sc, "", nil, nil, nil, err
	}
	sql, args, opts, err := p.callArgs(ctx, sql, args)
	if err != nil {
		return sc, "", nil, nil, nil, err
	}
	cls, err := p.check(sql)
	return sc, sql, args, opts, cls, err
}

// release returns c to the pool, or closes it if a statement may have left
// session state on it.
func (p *Pool) release(c *pgxpool.Conn, st *connState) {
	if st != nil && st.dirty {
		p.destroy(c)
		return
	}
	// A block of Citus mode that failed: rolled back here rather than
	// destroyed by the pool.
	abortBlock(context.Background(), c.Conn())
	c.Release()
}

// Exec runs sql in the tenant's scope, setting and statement in one round trip.
func (p *Pool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	sc, sql, args, opts, cls, err := p.prepareCall(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	st := p.state(c.Conn())
	defer p.release(c, st)
	if len(opts) > 0 || p.simple && cls.check {
		return p.execInTx(ctx, c.Conn(), st, sc, cls, sql, append(opts, args...))
	}
	if p.simple {
		br, err := p.send(ctx, c.Conn(), sc, sql, args)
		if err != nil {
			return pgconn.CommandTag{}, err
		}
		ct, err := br.Exec()
		if closeErr := br.Close(); err == nil {
			err = closeErr
		}
		st.observe(cls, ct)
		return ct, err
	}
	ct, _, err := p.execStmt(ctx, c.Conn(), st, sc, cls, sql, args, withScope, pgx.TxOptions{})
	if isStaleStatement(err) {
		// The schema's tables changed under the prepared statement; it failed
		// before executing, so prepare it afresh and send it once more.
		ct, _, err = p.execStmt(ctx, c.Conn(), st, sc, cls, sql, args, withScope, pgx.TxOptions{})
	}
	return ct, err
}

// execInTx runs a statement with explicit pgx options (the simple protocol, result
// formats) through pgx, in a transaction that carries the scope.
func (p *Pool) execInTx(ctx context.Context, c *pgx.Conn, st *connState, sc scope, cls *class, sql string, args []any) (pgconn.CommandTag, error) {
	tx, err := p.beginScoped(ctx, c, sc, pgx.TxOptions{})
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ct, err := tx.Exec(ctx, sql, args...)
	st.observe(cls, ct)
	if err == nil && cls.check {
		err = p.guardPgx(ctx, c, st, sc)
	}
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		if cls.check {
			p.sessionPgx(ctx, c, st)
		}
		return ct, err
	}
	if err := tx.Commit(ctx); err != nil {
		return ct, err
	}
	if cls.check {
		p.sessionPgx(ctx, c, st)
	}
	return ct, nil
}

// queryInTx runs a query with explicit pgx options (the simple protocol, result
// formats) through pgx, in a transaction that carries the scope; closing the
// rows ends it and calls finish. On an error, the transaction is over and
// finish is not called.
func (p *Pool) queryInTx(ctx context.Context, c *pgx.Conn, st *connState, sc scope, cls *class, sql string, args []any, finish func(error) error) (pgx.Rows, error) {
	tx, err := p.beginScoped(ctx, c, sc, pgx.TxOptions{})
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return &stmtRows{Rows: rows, st: st, cls: cls, conn: c, finish: func(rowsErr error) error {
		if rowsErr == nil && cls.check {
			rowsErr = p.guardPgx(ctx, c, st, sc)
		}
		if rowsErr != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		} else {
			rowsErr = tx.Commit(ctx)
		}
		if cls.check && !c.IsClosed() && c.PgConn().TxStatus() == 'I' {
			p.sessionPgx(ctx, c, st)
		}
		return finish(rowsErr)
	}}, nil
}

// beginScoped begins a transaction on c through pgx and sets the tenant's
// scope in the same round trip, for the paths that hand statements to pgx
// itself (explicit query options, connections that prepare nothing).
func (p *Pool) beginScoped(ctx context.Context, c *pgx.Conn, sc scope, opts pgx.TxOptions) (pgx.Tx, error) {
	b := &pgx.Batch{}
	b.BeginTx(opts)
	p.queueScope(b, sc)
	br := c.SendBatch(ctx, b)
	tx := br.Tx()
	_, err := br.Exec()
	if err == nil {
		err = p.readScope(ctx, c, sc, br)
	}
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		if !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		return nil, err
	}
	return tx, nil
}

// send sends the scope statement and sql through pgx as one
// simple-protocol message, for pools on the simple protocol; it reads the
// scope's result and leaves the statement's to the caller.
func (p *Pool) send(ctx context.Context, c *pgx.Conn, sc scope, sql string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, 2)}
	p.queueScope(b, sc)
	b.Queue(sql, args...)
	br := c.SendBatch(ctx, b)
	if err := p.readScope(ctx, c, sc, br); err != nil {
		_ = br.Close()
		return nil, err
	}
	return br, nil
}

// readScope reads the results of the scope statement and, in Citus mode,
// of the SET LOCALs after it, from a pgx batch.
func (p *Pool) readScope(ctx context.Context, c *pgx.Conn, sc scope, br pgx.BatchResults) error {
	n := 1
	if p.citus {
		n += citusResults
	}
	for range n {
		if _, err := br.Exec(); err != nil {
			return scopeFailed(ctx, c, sc, err)
		}
	}
	return nil
}

// Query runs sql in the tenant's scope, setting and statement in one round
// trip. The connection returns to the pool when the rows are closed.
func (p *Pool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	sc, sql, args, opts, cls, err := p.prepareCall(ctx, sql, args)
	if err != nil {
		return errRows{err}, err
	}
	return p.query(ctx, sc, cls, sql, args, opts)
}

// query is Query after prepareCall.
func (p *Pool) query(ctx context.Context, sc scope, cls *class, sql string, args, opts []any) (pgx.Rows, error) {
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return errRows{err}, err
	}
	st := p.state(c.Conn())
	rows, err := p.queryOn(ctx, c, st, sc, cls, sql, args, opts)
	if err != nil {
		p.release(c, st)
		return errRows{err}, err
	}
	return rows, nil
}

// queryOn sends sql on c; the rows return c to the pool when closed.
func (p *Pool) queryOn(ctx context.Context, c *pgxpool.Conn, st *connState, sc scope, cls *class, sql string, args, opts []any) (pgx.Rows, error) {
	release := func(err error) error {
		p.release(c, st)
		return err
	}
	if len(opts) > 0 || p.simple && cls.check {
		return p.queryInTx(ctx, c.Conn(), st, sc, cls, sql, append(opts, args...), release)
	}
	if p.simple {
		br, err := p.send(ctx, c.Conn(), sc, sql, args)
		if err != nil {
			return nil, err
		}
		rows, err := br.Query()
		r := &stmtRows{Rows: rows, st: st, cls: cls, conn: c.Conn(), finish: func(rowsErr error) error {
			if err := br.Close(); rowsErr == nil {
				rowsErr = err
			}
			return release(rowsErr)
		}}
		if err != nil {
			// As with pgxpool, a failed Query needs no Close from the caller.
			_ = br.Close()
			return nil, err
		}
		return r, nil
	}
	rows, _, err := p.queryStmt(ctx, c.Conn(), st, sc, cls, sql, args, withScope, pgx.TxOptions{}, release)
	if isStaleStatement(err) {
		// As in Exec: the statement failed before any row reached the
		// caller; prepared afresh, it is sent once more.
		rows, _, err = p.queryStmt(ctx, c.Conn(), st, sc, cls, sql, args, withScope, pgx.TxOptions{}, release)
	}
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// QueryRow runs sql in the tenant's scope like [Pool.Query]; errors are
// deferred to Scan, which returns pgx.ErrNoRows when there is no row.
func (p *Pool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return p.queryRow(ctx, sql, args, true)
}

func (p *Pool) queryRow(ctx context.Context, sql string, args []any, retry bool) pgx.Row {
	rawSQL, rawArgs := sql, args
	sc, sql, args, opts, cls, err := p.prepareCall(ctx, sql, args)
	if err != nil {
		return &row{rows: errRows{err}}
	}
	if len(opts) > 0 || p.simple {
		rows, _ := p.query(ctx, sc, cls, sql, args, opts)
		r := &row{rows: rows}
		if retry {
			r.retry = func() pgx.Rows { rows, _ := p.query(ctx, sc, cls, sql, args, opts); return rows }
		}
		return r
	}
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return &row{rows: errRows{err}}
	}
	st := p.state(c.Conn())
	r, _ := p.rowStmt(ctx, c.Conn(), st, sc, cls, sql, args, withScope, pgx.TxOptions{})
	// The pool's path: the row returns the connection, and a stale statement
	// is sent once more (from the caller's SQL, through prepareCall again).
	r.pc, r.sql, r.args, r.retry = c, rawSQL, rawArgs, retry
	if r.err != nil {
		r.done(r.err)
	}
	return r
}

// CopyFrom copies rows into tableName (resolved in the tenant's schema) in a
// transaction that carries the tenant's scope, so RLS checks every row; see
// [Tx.CopyFrom].
func (p *Pool) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	return copyInTx(ctx, p.Begin, tableName, columnNames, rowSrc)
}

// copyInTx runs CopyFrom in a transaction of its own.
func copyInTx(ctx context.Context, begin func(context.Context) (pgx.Tx, error), tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	tx, err := begin(ctx)
	if err != nil {
		return 0, err
	}
	n, err := tx.CopyFrom(ctx, tableName, columnNames, rowSrc)
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return 0, err
	}
	return n, tx.Commit(ctx)
}

// Begin starts a transaction in the tenant's scope; see [Pool.BeginTx].
func (p *Pool) Begin(ctx context.Context) (pgx.Tx, error) {
	return p.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx starts a transaction in the tenant's scope. It takes a connection
// now; BEGIN and the settings travel with the transaction's first statement,
// in one round trip, and the settings last until the transaction ends. The
// connection returns to the pool on Commit or Rollback.
//
// The transaction behaves as pgx's does: a failed statement aborts it (later
// statements fail with SQLSTATE 25P02, Commit returns
// pgx.ErrTxCommitRollback), nested Begin makes savepoints, and a statement
// new on the connection is prepared inside it, never in a transaction of its
// own. One difference: an error in BEGIN itself (an unusable
// TxOptions.BeginQuery) is returned by the first statement, not by BeginTx.
func (p *Pool) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	sc, err := p.require(ctx)
	if err != nil {
		return nil, err
	}
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	t := &Tx{p: p, sc: sc, pc: c, conn: c.Conn(), st: p.state(c.Conn()), opts: opts}
	t.top = t
	if p.simple {
		// The simple protocol cannot carry the first statement's arguments
		// as parameters after BEGIN; begin now, still with the scope in one
		// round trip.
		if err := t.begin(ctx); err != nil {
			p.release(c, t.st)
			return nil, err
		}
	}
	return t, nil
}

// Ping checks that a connection can be acquired and answers. It needs no tenant.
func (p *Pool) Ping(ctx context.Context) error { return p.pool.Ping(ctx) }

// Stat returns the underlying pool's statistics.
func (p *Pool) Stat() *pgxpool.Stat { return p.pool.Stat() }

// Close closes every connection of the pool.
func (p *Pool) Close() { p.pool.Close() }

// Unscoped returns the underlying pgx pool for work that belongs to no
// tenant, such as reading shared tables. Its statements run with the
// session's default search_path and without the tenant setting, so RLS
// policies show them no tenant's rows, and nothing the tenants' statements
// and transactions did is left on its connections (see the package
// documentation). Session state set through it stays on the connection; the
// scoped methods override search_path and the setting for every statement,
// and the role too unless the pool's role was a member of no role when the
// pool made its first connection (it could not SET ROLE then; grant it a
// role later and a SET ROLE left here would carry into tenant statements
// until the connection is replaced). Leave nothing there that a tenant must
// not see.
func (p *Pool) Unscoped() *pgxpool.Pool { return p.pool }

func (p *Pool) require(ctx context.Context) (scope, error) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return scope{}, err
	}
	return p.scopeFor(t), nil
}
