package pgtenant

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// batchRows are the rows of a statement sent in a batch with its scope
// statement; closing them reads the rest of the batch and, when conn is set,
// returns the connection.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	p      *Pool
	ctx    context.Context
	conn   *pgxpool.Conn
	key    stmtKey
	err    error
	closed bool
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.Rows.Err()
	if err := r.br.Close(); r.err == nil {
		r.err = err
	}
	if r.conn == nil { // rows of a transaction's first statement
		return
	}
	if r.err != nil && r.p.prepared && isStaleStatement(r.err) {
		r.p.forget(r.ctx, r.conn.Conn(), r.key)
	}
	r.conn.Release()
}

func (r *batchRows) Err() error {
	if r.closed {
		return r.err
	}
	return r.Rows.Err()
}

// txRows are the rows of a statement run in its own scoped transaction; closing
// them commits it and returns the connection.
type txRows struct {
	pgx.Rows
	tx      pgx.Tx
	ctx     context.Context
	release func()
	err     error
	closed  bool
}

func (r *txRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *txRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.Rows.Err()
	if r.err == nil {
		r.err = r.tx.Commit(r.ctx)
	} else {
		_ = r.tx.Rollback(context.WithoutCancel(r.ctx))
	}
	r.release()
}

func (r *txRows) Err() error {
	if r.closed {
		return r.err
	}
	return r.Rows.Err()
}

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

// row is the result of QueryRow. With retry set, a statement whose plan went stale (its
// tables changed type after it was prepared) failed before it ran, so it is
// sent once more.
type row struct {
	rows pgx.Rows
	// retry, when set, sends the statement again.
	retry *Pool
	ctx   context.Context
	sql   string
	args  []any
}

func (r *row) Scan(dest ...any) error {
	err := scanOne(r.rows, dest)
	if err != nil && r.retry != nil && isStaleStatement(err) {
		rows, _ := r.retry.Query(r.ctx, r.sql, r.args...)
		err = scanOne(rows, dest)
	}
	return err
}

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
	if err := rows.Err(); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	return nil
}
