package pgtenant

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// finishRows are rows whose statement needs finishing once they are read:
// the rest of a batch read, or a transaction committed, and the connection
// returned. finish gets the rows' error and returns the final one.
type finishRows struct {
	pgx.Rows
	finish func(rowsErr error) error
	err    error
	closed bool
}

func (r *finishRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *finishRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.finish(r.Rows.Err())
}

func (r *finishRows) Err() error {
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
