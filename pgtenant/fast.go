package pgtenant

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/tenant"
)

// The statement path for connections that prepare statements. It works at the
// pgconn level: one pgconn.Batch holds the scope statement and the user's
// statement, both bound to statements already prepared on the connection, and
// goes out as one write; the results are read back as one implicit
// transaction. Nothing is parsed or planned per call, and the argument
// encoder is reused per connection, so a scoped statement costs little more
// than a plain one.

// scopeParams are the encoded arguments of the scope statement, cached per
// tenant: the search_path literal needs quoting and concatenation, which is
// worth doing once.
type scopeParams struct {
	values [][]byte
}

// scopeCache maps tenant.Tenant to *scopeParams. It is cleared when it passes
// maxScopeCache entries, which bounds it for fleets of any size.
type scopeCache struct {
	m sync.Map
	n atomic.Int64
}

const maxScopeCache = 8192

func (p *Pool) scopeValues(sc scope) [][]byte {
	if v, ok := p.scopes.m.Load(sc.tenant); ok {
		return v.(*scopeParams).values
	}
	args := p.args(sc)
	values := make([][]byte, len(args))
	for i, a := range args {
		values[i] = []byte(a.(string))
	}
	if p.scopes.n.Add(1) > maxScopeCache {
		p.scopes.m.Clear()
		p.scopes.n.Store(1)
	}
	p.scopes.m.Store(sc.tenant, &scopeParams{values: values})
	return values
}

// statementSD is [Pool.statement] returning the statement's description.
func (p *Pool) statementSD(ctx context.Context, c *pgx.Conn, sc scope, sql string) (*pgconn.StatementDescription, error) {
	st := p.state(c)
	if el, ok := st.stmts[stmtKey{schema: sc.key, sql: sql}]; ok {
		st.lru.MoveToFront(el)
		return el.Value.(*stmtEntry).sd, nil
	}
	if _, err := p.statement(ctx, c, sc, sql); err != nil {
		return nil, err
	}
	return st.stmts[stmtKey{schema: sc.key, sql: sql}].Value.(*stmtEntry).sd, nil
}

// sendFast sends the scope statement and sql on c in one write and returns
// the reader positioned at the statement's result.
func (p *Pool) sendFast(ctx context.Context, c *pgx.Conn, sc scope, sql string, args []any) (*pgconn.MultiResultReader, error) {
	sd, err := p.statementSD(ctx, c, sc, sql)
	if err != nil {
		return nil, err
	}
	st := p.state(c)
	if err := p.ensureScopeSD(ctx, c, st); err != nil {
		return nil, err
	}
	if err := st.eqb.Build(c.TypeMap(), sd, args); err != nil {
		return nil, fmt.Errorf("pgtenant: encode arguments: %w", err)
	}
	var b pgconn.Batch
	b.ExecStatement(st.scopeSD, p.scopeValues(sc), nil, nil)
	b.ExecStatement(sd, st.eqb.ParamValues, st.eqb.ParamFormats, st.eqb.ResultFormats)
	mrr := c.PgConn().ExecBatch(ctx, &b)
	if err := readScope(ctx, c, mrr, sc); err != nil {
		return nil, err
	}
	if !mrr.NextResult() {
		return nil, closeErr(mrr, sc.tenant)
	}
	return mrr, nil
}

// readScope reads the scope statement's result. If it failed, the server
// skips the rest of the batch, so the statement did not run. A connection
// that lost its scope statement is closed, and the pool replaces it.
func readScope(ctx context.Context, c *pgx.Conn, mrr *pgconn.MultiResultReader, sc scope) error {
	var err error
	if mrr.NextResult() {
		if _, err = mrr.ResultReader().Close(); err == nil {
			return nil
		}
	}
	if closeErr := mrr.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = errors.New("the server sent no result")
	}
	return scopeFailed(ctx, c, sc, err)
}

// scopeFailed wraps a failure of the scope statement. A connection that lost
// its prepared scope statement is closed, and the pool replaces it.
func scopeFailed(ctx context.Context, c *pgx.Conn, sc scope, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "26000" {
		_ = c.Close(context.WithoutCancel(ctx))
	}
	return &scopeError{tenant: sc.tenant, err: err}
}

// scopeError is a failure of the scope statement: nothing after it ran, and
// it is never retried as a stale statement would be.
type scopeError struct {
	tenant tenant.Tenant
	err    error
}

func (e *scopeError) Error() string {
	return fmt.Sprintf("pgtenant: set scope of tenant %s: %v", e.tenant, e.err)
}

func (e *scopeError) Unwrap() error { return e.err }

// ensureScopeSD fills in the scope statement's description. The statement
// was prepared in AfterConnect, so pgx answers from its map without I/O.
func (p *Pool) ensureScopeSD(ctx context.Context, c *pgx.Conn, st *connState) error {
	if st.scopeSD != nil {
		return nil
	}
	sd, err := c.Prepare(ctx, scopeStmt, p.scopeSQL())
	st.scopeSD = sd
	return err
}

func closeErr(mrr *pgconn.MultiResultReader, t tenant.Tenant) error {
	if err := mrr.Close(); err != nil {
		return err
	}
	return fmt.Errorf("pgtenant: tenant %s: the server sent fewer results than statements", t)
}

func (p *Pool) execFast(ctx context.Context, c *pgx.Conn, sc scope, sql string, args []any) (pgconn.CommandTag, error) {
	mrr, err := p.sendFast(ctx, c, sc, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ct, err := mrr.ResultReader().Close()
	if closeErr := mrr.Close(); err == nil {
		err = closeErr
	}
	return ct, err
}

func (p *Pool) queryFast(ctx context.Context, c *pgxpool.Conn, sc scope, sql string, args []any) (pgx.Rows, error) {
	key := stmtKey{schema: sc.key, sql: sql}
	mrr, err := p.sendFast(ctx, c.Conn(), sc, sql, args)
	if err != nil {
		if isStaleStatement(err) {
			p.forget(ctx, c.Conn(), key)
		}
		return nil, err
	}
	rows := pgx.RowsFromResultReader(c.Conn().TypeMap(), mrr.ResultReader())
	return &fastRows{Rows: rows, mrr: mrr, p: p, ctx: ctx, conn: c.Conn(), release: c.Release, key: key}, nil
}

// fastRows read the statement's result; closing them reads to the end of the
// batch and, on the pool's statement path, returns the connection.
type fastRows struct {
	pgx.Rows
	mrr     *pgconn.MultiResultReader
	p       *Pool
	ctx     context.Context
	conn    *pgx.Conn
	release func() // nil inside a transaction
	key     stmtKey
	err     error
	closed  bool
}

func (r *fastRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *fastRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.Rows.Err()
	if err := r.mrr.Close(); r.err == nil {
		r.err = err
	}
	if r.err != nil && isStaleStatement(r.err) {
		r.p.forget(r.ctx, r.conn, r.key)
	}
	if r.release != nil {
		r.release()
	}
}

func (r *fastRows) Err() error {
	if r.closed {
		return r.err
	}
	return r.Rows.Err()
}

// Conn returns the connection the rows are read from.
func (r *fastRows) Conn() *pgx.Conn { return r.conn }

// fastRow is QueryRow's result on the fast path: it scans straight from the
// result reader, with no Rows in between.
type fastRow struct {
	p       *Pool
	ctx     context.Context
	sc      scope
	sql     string
	args    []any
	conn    *pgx.Conn
	release func()
	pooled  bool // on the pool's path; inside a transaction nothing is retried
	mrr     *pgconn.MultiResultReader
	err     error
}

// send acquires a connection and sends the statement on the pool's path.
func (r *fastRow) send() {
	c, err := r.p.pool.Acquire(r.ctx)
	if err != nil {
		r.err = err
		return
	}
	r.conn, r.release = c.Conn(), c.Release
	r.mrr, r.err = r.p.sendFast(r.ctx, r.conn, r.sc, r.sql, r.args)
	if r.err != nil {
		r.forgetIfStale(r.conn)
		r.done()
	}
}

func (r *fastRow) done() {
	if r.release != nil {
		r.release()
		r.release = nil
	}
}

func (r *fastRow) forgetIfStale(c *pgx.Conn) {
	if isStaleStatement(r.err) {
		r.p.forget(r.ctx, c, stmtKey{schema: r.sc.key, sql: r.sql})
	}
}

// Scan reads the first row into dest, or returns pgx.ErrNoRows. A statement
// whose plan went stale failed before it ran, so it is sent once more.
func (r *fastRow) Scan(dest ...any) error {
	err := r.scan(dest)
	if err != nil && r.pooled && isStaleStatement(err) {
		r.send()
		err = r.scan(dest)
	}
	return err
}

func (r *fastRow) scan(dest []any) error {
	if r.err != nil {
		return r.err
	}
	c := r.conn
	defer r.done()
	for _, d := range dest {
		if _, ok := d.(*pgtype.DriverBytes); ok {
			r.err = fmt.Errorf("cannot scan into *pgtype.DriverBytes from QueryRow")
			_ = r.mrr.Close()
			return r.err
		}
	}
	rr := r.mrr.ResultReader()
	var scanErr error
	found := rr.NextRow()
	if found {
		scanErr = pgx.ScanRow(c.TypeMap(), rr.FieldDescriptions(), rr.Values(), dest...)
	}
	_, err := rr.Close()
	if closeErr := r.mrr.Close(); err == nil {
		err = closeErr
	}
	switch {
	case err != nil:
		r.err = err
		r.forgetIfStale(c)
	case scanErr != nil:
		r.err = scanErr
	case !found:
		r.err = pgx.ErrNoRows
	default:
		r.err = errRowDone
	}
	if r.err == errRowDone {
		return nil
	}
	return r.err
}

// errRowDone marks a fastRow that was scanned: a second Scan reports it.
var errRowDone = fmt.Errorf("pgtenant: row already scanned")
