package pgtenant

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// stmtRows are the rows of one statement. Closing them finishes what the
// statement started: the rest of its batch is read, its command tag is
// checked for session state, a stale statement is forgotten, and, on the
// pool's statement path, the connection is returned.
type stmtRows struct {
	pgx.Rows
	mrr    *pgconn.MultiResultReader // the statement's batch; nil if the rows are all
	st     *connState
	cls    *class
	key    stmtKey
	conn   *pgx.Conn
	finish func(err error) error // returns the connection, or ends a transaction; may be nil
	p      *Pool                 // set to trace the end of the statement, with tctx
	tctx   context.Context
	err    error
	closed bool
}

func (r *stmtRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *stmtRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.Rows.Err()
	if r.mrr != nil {
		if err := r.mrr.Close(); r.err == nil {
			r.err = err
		}
		if r.p != nil {
			r.err = r.p.verdict(r.st, r.err)
		}
	}
	if r.st != nil {
		r.st.observe(r.cls, r.Rows.CommandTag())
		r.st.settle(r.key, r.err)
	}
	if r.p != nil {
		r.p.traceEnd(r.tctx, r.conn, r.Rows.CommandTag(), r.err)
	}
	if r.finish != nil {
		r.err = r.finish(r.err)
	}
}

func (r *stmtRows) Err() error {
	if r.closed {
		return r.err
	}
	return r.Rows.Err()
}

// Conn returns the connection the rows are read from.
func (r *stmtRows) Conn() *pgx.Conn { return r.conn }

// errRows are the rows of a statement that never ran.
type errRows struct{ err error }

func (e errRows) Close()                                       {}
func (e errRows) Err() error                                   { return e.err }
func (e errRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (e errRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (e errRows) Next() bool                                   { return false }
func (e errRows) Scan(...any) error                            { return e.err }
func (e errRows) Values() ([]any, error)                       { return nil, e.err }
func (e errRows) RawValues() [][]byte                          { return nil }
func (e errRows) Conn() *pgx.Conn                              { return nil }
func (e errRows) TypeMap() *pgtype.Map                         { return nil }

// row is the result of QueryRow over rows (a Conn's, a batch's, or an
// error before any I/O).
type row struct{ rows pgx.Rows }

func (r *row) Scan(dest ...any) error { return scanOne(r.rows, dest) }

func scanOne(rows pgx.Rows, dest []any) error {
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// stmtRow is QueryRow's result on the statement path: it scans straight from
// the result reader, with no Rows in between. On the pool's statement path
// (pc set) it returns the connection once scanned, and a statement whose
// plan went stale is sent once more.
type stmtRow struct {
	mrr  *pgconn.MultiResultReader
	conn *pgx.Conn
	st   *connState
	cls  *class
	key  stmtKey
	// p traces the statement; with pc set, this is the pool's statement
	// path, which returns the connection and retries a stale statement.
	p     *Pool
	pc    *pgxpool.Conn
	ctx   context.Context
	sql   string
	args  []any
	retry bool
	err   error
}

// Scan reads the first row into dest, or returns pgx.ErrNoRows.
func (r *stmtRow) Scan(dest ...any) error {
	err := r.scan(dest)
	if err != nil && r.retry && isStaleStatement(err) {
		r.retry = false
		return r.p.queryRow(r.ctx, r.sql, r.args, false).Scan(dest...)
	}
	return err
}

func (r *stmtRow) scan(dest []any) error {
	if r.err != nil {
		return r.err
	}
	if r.mrr == nil {
		return errRowDone
	}
	mrr := r.mrr
	r.mrr = nil
	for _, d := range dest {
		if _, ok := d.(*pgtype.DriverBytes); ok {
			_ = mrr.Close()
			return r.done(errors.New("cannot scan into *pgtype.DriverBytes from QueryRow"))
		}
	}
	rr := mrr.ResultReader()
	var scanErr error
	found := rr.NextRow()
	if found {
		scanErr = pgx.ScanRow(r.conn.TypeMap(), rr.FieldDescriptions(), rr.Values(), dest...)
	}
	tag, err := rr.Close()
	if closeErr := mrr.Close(); err == nil {
		err = closeErr
	}
	if err = r.p.verdict(r.st, err); err != nil && r.cls.check && r.pc != nil {
		r.st.dirty = true // see Pool.failed
	}
	r.st.observe(r.cls, tag)
	r.st.settle(r.key, err)
	r.p.traceEnd(r.ctx, r.conn, tag, err)
	switch {
	case err != nil:
	case scanErr != nil:
		err = scanErr
	case !found:
		err = pgx.ErrNoRows
	}
	return r.done(err)
}

// done records the row's outcome and returns the connection on the pool's
// path.
func (r *stmtRow) done(err error) error {
	if r.pc != nil {
		r.p.release(r.pc, r.st)
		r.pc = nil
	}
	r.err = err
	if err == nil {
		r.err = errRowDone
	}
	return err
}

// errRowDone marks a row that was scanned: a second Scan reports it.
var errRowDone = errors.New("pgtenant: row already scanned")

// stmtBatch is the pgx.BatchResults of a batch of prepared statements, read
// as pgx reads its own: the first error sticks, and Close runs the queued
// callbacks of the queries not read yet.
type stmtBatch struct {
	ctx     context.Context
	b       *pgx.Batch
	mrr     *pgconn.MultiResultReader
	conn    *pgx.Conn
	st      *connState
	classes []*class
	keys    []stmtKey
	args    [][]any
	bt      pgx.BatchTracer // nil when not tracing
	idx     int
	finish  func(err error) error
	err     error
	closed  bool
	// p reads the backstop's guards, queued after each checked query.
	p *Pool
	// guard: the result the server sends next is the guard of the query
	// read last.
	guard bool
	// guardN is how many results the encoder's guard queued.
	guardN int
}

var _ pgx.BatchResults = (*stmtBatch)(nil)

// readGuard reads the guard queued after the query read last, if any.
func (br *stmtBatch) readGuard() error {
	if !br.guard {
		return nil
	}
	br.guard = false
	var err error
	for n := br.guardN; n > 0 && err == nil; n-- {
		err = errors.New("pgtenant: the server sent no result for the backstop's check")
		if br.mrr.NextResult() {
			_, err = br.mrr.ResultReader().Close()
		}
	}
	if err = br.p.verdict(br.st, err); err != nil {
		br.err = err
		_ = br.mrr.Close()
	}
	return err
}

func (br *stmtBatch) next() (*pgconn.ResultReader, error) {
	if br.err != nil {
		return nil, br.err
	}
	if br.closed {
		return nil, errors.New("pgtenant: batch already closed")
	}
	if br.idx >= len(br.classes) {
		return nil, errors.New("pgtenant: no more results in batch")
	}
	if err := br.readGuard(); err != nil {
		return nil, err
	}
	if !br.mrr.NextResult() {
		err := br.mrr.Close()
		if err == nil {
			err = errors.New("pgtenant: no more results in batch")
		}
		br.err = err
		return nil, err
	}
	br.idx++
	br.guard = br.classes[br.idx-1].check && br.p != nil
	return br.mrr.ResultReader(), nil
}

// fail records err as the batch's error, forgetting a stale statement.
func (br *stmtBatch) fail(i int, err error) {
	br.st.settle(br.keys[i], err)
	br.err = err
	_ = br.mrr.Close()
}

// traceQuery reports query i's outcome to the batch tracer.
func (br *stmtBatch) traceQuery(i int, tag pgconn.CommandTag, err error, start time.Time) {
	if br.bt != nil {
		br.bt.TraceBatchQuery(br.ctx, br.conn, pgx.TraceBatchQueryData{SQL: br.keys[i].sql, Args: br.args[i], CommandTag: tag, Err: err, ReadStartTime: start})
	}
}

// Exec reads the next query's command tag.
func (br *stmtBatch) Exec() (pgconn.CommandTag, error) {
	start := time.Now()
	rr, err := br.next()
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	i := br.idx - 1
	tag, err := rr.Close()
	br.traceQuery(i, tag, err, start)
	br.st.observe(br.classes[i], tag)
	if err != nil {
		br.fail(i, err)
		return pgconn.CommandTag{}, err
	}
	if err := br.readGuard(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return tag, nil
}

// Query reads the next query's rows.
func (br *stmtBatch) Query() (pgx.Rows, error) {
	start := time.Now()
	rr, err := br.next()
	if err != nil {
		return errRows{err}, err
	}
	i := br.idx - 1
	var rows *stmtRows
	rows = &stmtRows{Rows: pgx.RowsFromResultReader(br.conn.TypeMap(), rr), st: br.st, cls: br.classes[i], key: br.keys[i], conn: br.conn,
		finish: func(err error) error {
			br.traceQuery(i, rows.Rows.CommandTag(), err, start)
			if err != nil {
				br.fail(i, err)
			}
			return err
		}}
	return rows, nil
}

// QueryRow reads the next query's first row.
func (br *stmtBatch) QueryRow() pgx.Row {
	rows, _ := br.Query()
	return &row{rows: rows}
}

// Close reads what is left of the batch, running the callbacks of the queries
// not read yet, and returns the first error.
func (br *stmtBatch) Close() error {
	if br.closed {
		return br.err
	}
	for br.err == nil && br.idx < len(br.classes) {
		if fn := br.b.QueuedQueries[br.idx].Fn; fn != nil {
			if err := fn(br); err != nil && br.err == nil {
				br.err = err
			}
		} else {
			_, _ = br.Exec()
		}
	}
	br.closed = true
	if err := br.mrr.Close(); br.err == nil {
		br.err = err
		if br.p != nil {
			br.err = br.p.verdict(br.st, br.err)
		}
	}
	if br.bt != nil {
		br.bt.TraceBatchEnd(br.ctx, br.conn, pgx.TraceBatchEndData{Err: br.err})
	}
	if br.finish != nil {
		br.err = br.finish(br.err)
	}
	return br.err
}

// failedBatch returns the results of a batch that never ran.
func failedBatch(b *pgx.Batch, err error) pgx.BatchResults { return pgx.FailedBatchResults(b, err) }

// wrapErr prefixes err with the position of the batch query it is about.
func wrapErr(i int, err error) error { return fmt.Errorf("pgtenant: batch query %d: %w", i, err) }

// Tx returns nil: a batch on the statement path or in a transaction begins
// no transaction of its own.
func (br *stmtBatch) Tx() pgx.Tx { return nil }
