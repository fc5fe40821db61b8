package pgtenant

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
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
	pool    *pgxpool.Pool
	cfg     settings
	conns   sync.Map // *pgx.Conn -> *connState
	scopes  scopeCache
	classes classCache
	// noRoleReset drops set_config('role', 'none') from the scope
	// statement: set on the first connection when the pool's role is a
	// member of no role (see learnRole).
	noRoleReset atomic.Bool
	roleMu      sync.Mutex
	role        *poolRole

	// kind is the encoder of the pool's exec mode, encs the encoders of
	// every mode (newEncoders, in New); senders pair them with the carrier
	// of the pool's Citus mode, send is the pool's own (chooseSenders, once
	// the first connection told the Citus mode). See sender.go.
	kind    encoderKind
	encs    [kinds]encoder
	senders [kinds]sender
	send    *sender
	// bs: the server-side backstop's statements (backstop.go).
	bs backstop
	// scopeTexts are the scope statement with and without the role reset,
	// sessionText its session-level form (scope.go, built in New).
	scopeTexts  [2]string
	sessionText string
	// gate enforces Config.TenantLimits (nil: none); obs is Config.Observer.
	gate *gate
	obs  Observer

	// The tracers of the pool's ConnConfig, called with the caller's SQL
	// (nil when not implemented).
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
	p.buildScopeTexts()
	p.obs = cfg.Observer
	pc := cfg.PoolConfig.Copy()
	p.qt = pc.ConnConfig.Tracer
	p.pt, _ = pc.ConnConfig.Tracer.(pgx.PrepareTracer)
	p.bt, _ = pc.ConnConfig.Tracer.(pgx.BatchTracer)
	p.newEncoders(pc.ConnConfig.DefaultQueryExecMode)
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
		if err := p.learnBaseline(ctx, c); err != nil {
			return err
		}
		return p.encs[p.kind].connect(ctx, c, p.state(c))
	}
	if cfg.TenantLimits != nil {
		p.gate = newGate(*cfg.TenantLimits, 0) // total set below, once the pool has its MaxConns
		p.countUnscoped(pc)
	}
	pc.BeforeClose = func(c *pgx.Conn) {
		if st, ok := p.conns.LoadAndDelete(c); ok {
			p.unscopedDone(st.(*connState))
		}
		if userBeforeClose != nil {
			userBeforeClose(c)
		}
	}
	p.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgtenant: %w", err)
	}
	if p.gate != nil {
		p.gate.total = p.pool.Config().MaxConns
	}
	if err := p.checkRole(ctx); err != nil {
		p.pool.Close()
		return nil, err
	}
	return p, nil
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
// require a tenant, apply query rewriters, classify the SQL, pick the
// call's sender.
func (p *Pool) prepareCall(ctx context.Context, sql string, args []any) (scope, string, []any, *sender, *class, error) {
	sc, err := p.require(ctx)
	if err != nil {
		return sc, "", nil, nil, nil, err
	}
	sql, args, err = splitCall(ctx, sql, args)
	if err != nil {
		return sc, "", nil, nil, nil, err
	}
	cls, err := p.check(sql)
	return sc, sql, args, p.senderFor(args), cls, err
}

// acquire takes a connection for one call of sc's tenant, within the
// tenant's budget (Config.TenantLimits), and tells the Observer.
func (p *Pool) acquire(ctx context.Context, sc scope) (*pgxpool.Conn, *connState, error) {
	if p.gate == nil && p.obs == nil {
		c, err := p.pool.Acquire(ctx)
		if err != nil {
			return nil, nil, err
		}
		return c, p.state(c.Conn()), nil
	}
	var start time.Time
	if p.obs != nil {
		start = time.Now()
	}
	var q *tenantQueue
	if p.gate != nil {
		var err error
		if q, err = p.gate.enter(ctx, sc); err != nil {
			p.observeAcquired(ctx, sc, start, err)
			return nil, nil, err
		}
		// Tell countUnscoped's PrepareConn this acquire is a tenant's.
		ctx = context.WithValue(ctx, scopedAcquire{}, true)
	}
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		if q != nil {
			p.gate.leave(q)
		}
		p.observeAcquired(ctx, sc, start, err)
		return nil, nil, err
	}
	st := p.state(c.Conn())
	st.lease = lease{q: q, t: sc.tenant, on: true}
	if p.obs != nil {
		st.lease.since = time.Now()
		p.obs.Acquired(ctx, sc.tenant, st.lease.since.Sub(start), nil)
	}
	return c, st, nil
}

func (p *Pool) observeAcquired(ctx context.Context, sc scope, start time.Time, err error) {
	if p.obs != nil {
		p.obs.Acquired(ctx, sc.tenant, time.Since(start), err)
	}
}

// takeLease takes what st's connection owes, before the connection goes
// back (and st may be another caller's); endLease settles it after.
func takeLease(st *connState) lease {
	if st == nil || !st.lease.on {
		return lease{}
	}
	l := st.lease
	st.lease = lease{}
	return l
}

func (p *Pool) endLease(l lease) {
	if !l.on {
		return
	}
	// The Observer first, so that it never counts more than the budget:
	// leave may admit the tenant's next caller at once.
	if p.obs != nil {
		p.obs.Released(l.t, time.Since(l.since))
	}
	if l.q != nil {
		p.gate.leave(l.q)
	}
}

// release returns c to the pool, or closes it if a statement may have left
// session state on it; a block that failed (Citus mode's, a checked
// statement's) is rolled back here rather than destroyed by the pool. It is
// the session-state backstop's one exit on the pool's path.
func (p *Pool) release(c *pgxpool.Conn, st *connState) {
	if st != nil && st.dirty {
		p.destroy(c)
		return
	}
	abortBlock(context.Background(), c.Conn())
	l := takeLease(st)
	c.Release()
	p.endLease(l)
}

// Exec runs sql in the tenant's scope, setting and statement in one round trip.
func (p *Pool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	sc, sql, args, sd, cls, err := p.prepareCall(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	c, st, err := p.acquire(ctx, sc)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer p.release(c, st)
	return retryStale(func() (pgconn.CommandTag, error) {
		ct, _, err := p.execStmt(ctx, c.Conn(), st, sd, sc, cls, sql, args, withScope, pgx.TxOptions{})
		return ct, err
	})
}

// Query runs sql in the tenant's scope, setting and statement in one round
// trip. The connection returns to the pool when the rows are closed.
func (p *Pool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	sc, sql, args, sd, cls, err := p.prepareCall(ctx, sql, args)
	if err != nil {
		return errRows{err}, err
	}
	c, st, err := p.acquire(ctx, sc)
	if err != nil {
		return errRows{err}, err
	}
	release := func(err error) error {
		p.release(c, st)
		return err
	}
	rows, err := retryStale(func() (*stmtRows, error) {
		rows, _, err := p.queryStmt(ctx, c.Conn(), st, sd, sc, cls, sql, args, withScope, pgx.TxOptions{}, release)
		return rows, err
	})
	if err != nil {
		p.release(c, st)
		return errRows{err}, err
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
	sc, sql, args, sd, cls, err := p.prepareCall(ctx, sql, args)
	if err != nil {
		return &row{rows: errRows{err}}
	}
	c, st, err := p.acquire(ctx, sc)
	if err != nil {
		return &row{rows: errRows{err}}
	}
	r, _ := p.rowStmt(ctx, c.Conn(), st, sd, sc, cls, sql, args, withScope, pgx.TxOptions{})
	// The pool's path: the row returns the connection, and a stale statement
	// is sent once more (from the caller's SQL, through prepareCall again),
	// when Scan sees it: retryStale's rule, deferred.
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
	c, st, err := p.acquire(ctx, sc)
	if err != nil {
		return nil, err
	}
	t := &Tx{p: p, sc: sc, pc: c, conn: c.Conn(), st: st, opts: opts}
	t.top = t
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
	sc := p.scopeFor(t)
	if p.gate != nil {
		sc.lim = p.gate.limitsFor(t)
	}
	return sc, nil
}
