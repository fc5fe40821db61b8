package pgtenant

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// OpenDB returns a *sql.DB over p, a *Pool or a *Router, for code that
// reaches PostgreSQL through database/sql (sqlx, bun, GORM's postgres
// driver, ent): every statement
// and transaction runs in the tenant of its call's context, as the Pool's
// own methods do.
//
//   - A call whose context carries no tenant fails with tenant.ErrNoTenant
//     before any I/O ("no tenant" is never "all rows").
//   - A statement outside a transaction is the Pool's: scope and statement in
//     one round trip, the scope transaction-local, nothing left on the
//     connection. Session state (SET, temporary tables, …) is refused as on
//     the Pool (ErrSessionState).
//   - BeginTx begins in the tenant of its context, with BEGIN and the scope
//     travelling with the first statement; the transaction's statements stay
//     in that tenant (a context naming another one fails with
//     ErrTenantMismatch).
//
// Use the *sql.DB with ...Context methods: database/sql's methods without a
// context pass context.Background(), which carries no tenant. Rows scan as
// through pgx's own database/sql driver (stdlib): integers, floats, bools,
// bytea, dates and timestamps as Go values, json, jsonb and xml as the bytes
// of their text, every other type as its text.
//
// Where it differs from stdlib.OpenDBFromPool: database/sql's connections
// are handles that hold no server connection of their own — each statement
// takes one from the Pool and gives it back, and a transaction holds one
// until it ends — so a *sql.Conn gives no session affinity (session state is
// refused anyway), and named arguments (sql.Named) are refused: PostgreSQL
// numbers them ($1, $2). Closing the *sql.DB does not close the Pool. A
// query takes one round trip in every exec mode (on the simple protocol the
// result formats database/sql asks for are ignored, as pgx ignores them
// there).
func OpenDB(p DB) *sql.DB {
	return sql.OpenDB(&connector{p: p})
}

// connector hands database/sql a new handle; see OpenDB.
type connector struct{ p DB }

func (c *connector) Connect(context.Context) (driver.Conn, error) {
	return &sqlConn{p: c.p}, nil
}

func (c *connector) Driver() driver.Driver { return sqlDriver{} }

// sqlDriver exists for driver.Connector; a *sql.DB comes from OpenDB.
type sqlDriver struct{}

func (sqlDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("pgtenant: open a *sql.DB with pgtenant.OpenDB(pool), not by driver name")
}

// sqlConn is one database/sql connection: a handle on the Pool that holds a
// transaction while one is open.
type sqlConn struct {
	p     DB
	tx    pgx.Tx
	txCtx context.Context
	types *pgtype.Map // for scanning rows; a handle is used by one goroutine at a time
}

var (
	_ driver.Conn               = (*sqlConn)(nil)
	_ driver.ConnBeginTx        = (*sqlConn)(nil)
	_ driver.ExecerContext      = (*sqlConn)(nil)
	_ driver.QueryerContext     = (*sqlConn)(nil)
	_ driver.ConnPrepareContext = (*sqlConn)(nil)
	_ driver.NamedValueChecker  = (*sqlConn)(nil)
	_ driver.Pinger             = (*sqlConn)(nil)
	_ driver.SessionResetter    = (*sqlConn)(nil)
	_ driver.Validator          = (*sqlConn)(nil)
)

// querier is where the handle's statements go: its transaction, or the Pool.
func (c *sqlConn) querier() interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
} {
	if c.tx != nil {
		return c.tx
	}
	return c.p
}

func (c *sqlConn) ExecContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Result, error) {
	args, err := ordinalArgs(named)
	if err != nil {
		return nil, err
	}
	ct, err := c.querier().Exec(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(ct.RowsAffected()), nil
}

// sqlResultFormats are the result formats of database/sql queries: binary
// for the types scanned into Go values (see valueFunc), text for the rest,
// whose text is their database/sql value.
var sqlResultFormats = pgx.QueryResultFormatsByOID{
	pgtype.BoolOID: 1, pgtype.ByteaOID: 1, pgtype.CIDOID: 1, pgtype.DateOID: 1,
	pgtype.Float4OID: 1, pgtype.Float8OID: 1, pgtype.Int2OID: 1, pgtype.Int4OID: 1,
	pgtype.Int8OID: 1, pgtype.OIDOID: 1, pgtype.TimestampOID: 1, pgtype.TimestamptzOID: 1,
	pgtype.XIDOID: 1,
}

func (c *sqlConn) QueryContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Rows, error) {
	args, err := ordinalArgs(named)
	if err != nil {
		return nil, err
	}
	rows, err := c.querier().Query(ctx, query, append([]any{sqlResultFormats}, args...)...)
	if err != nil {
		return nil, err
	}
	// The first row is read now, so that an error of the statement is the
	// error of the query, as database/sql callers expect.
	more := rows.Next()
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, err
	}
	if c.types == nil {
		c.types = pgtype.NewMap()
	}
	return &sqlRows{rows: rows, types: c.types, pending: true, more: more}, nil
}

func (c *sqlConn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	return &sqlStmt{c: c, query: query}, nil
}

func (c *sqlConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *sqlConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.tx != nil {
		return nil, errors.New("pgtenant: database/sql began a transaction on a handle that has one")
	}
	var o pgx.TxOptions
	switch sql.IsolationLevel(opts.Isolation) {
	case sql.LevelDefault:
	case sql.LevelReadUncommitted:
		o.IsoLevel = pgx.ReadUncommitted
	case sql.LevelReadCommitted:
		o.IsoLevel = pgx.ReadCommitted
	case sql.LevelRepeatableRead, sql.LevelSnapshot:
		o.IsoLevel = pgx.RepeatableRead
	case sql.LevelSerializable:
		o.IsoLevel = pgx.Serializable
	default:
		return nil, fmt.Errorf("pgtenant: isolation level %v is not supported; use default, read uncommitted, read committed, repeatable read, snapshot or serializable", sql.IsolationLevel(opts.Isolation))
	}
	if opts.ReadOnly {
		o.AccessMode = pgx.ReadOnly
	}
	tx, err := c.p.BeginTx(ctx, o)
	if err != nil {
		return nil, err
	}
	c.tx, c.txCtx = tx, ctx
	return sqlTx{c}, nil
}

func (c *sqlConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// Close ends a transaction database/sql left open (it does not, but a
// handle must never keep a server connection).
func (c *sqlConn) Close() error {
	if c.tx != nil {
		err := c.tx.Rollback(context.WithoutCancel(c.txCtx))
		c.tx, c.txCtx = nil, nil
		return err
	}
	return nil
}

// CheckNamedValue passes every argument to pgx, which encodes Go values,
// driver.Valuer and its own types itself, as pgx's stdlib does.
func (c *sqlConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (c *sqlConn) Ping(ctx context.Context) error { return c.p.Ping(ctx) }

func (c *sqlConn) ResetSession(context.Context) error {
	if c.tx != nil {
		return driver.ErrBadConn // never reused with a transaction open
	}
	return nil
}

func (c *sqlConn) IsValid() bool { return c.tx == nil }

// ordinalArgs returns database/sql's arguments in order, refusing names.
func ordinalArgs(named []driver.NamedValue) ([]any, error) {
	args := make([]any, len(named))
	for i, v := range named {
		if v.Name != "" {
			return nil, fmt.Errorf("pgtenant: named argument %q: PostgreSQL numbers its parameters ($1, $2, …); pass arguments in order", v.Name)
		}
		args[i] = v.Value
	}
	return args, nil
}

// sqlTx is database/sql's view of the handle's transaction.
type sqlTx struct{ c *sqlConn }

func (t sqlTx) Commit() error   { return t.end(pgx.Tx.Commit) }
func (t sqlTx) Rollback() error { return t.end(pgx.Tx.Rollback) }

func (t sqlTx) end(f func(pgx.Tx, context.Context) error) error {
	tx, ctx := t.c.tx, t.c.txCtx
	if tx == nil {
		return sql.ErrTxDone
	}
	t.c.tx, t.c.txCtx = nil, nil
	return f(tx, ctx)
}

// sqlStmt is a statement database/sql prepared: its SQL, run through the
// handle on each execution (the Pool prepares per connection and tenant
// schema by itself).
type sqlStmt struct {
	c     *sqlConn
	query string
}

func (s *sqlStmt) Close() error  { return nil }
func (s *sqlStmt) NumInput() int { return -1 }

func (s *sqlStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, args)
}

func (s *sqlStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, args)
}

func (s *sqlStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), values(args))
}

func (s *sqlStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), values(args))
}

func values(args []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(args))
	for i, a := range args {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return out
}

// sqlRows turns pgx rows into database/sql's values.
type sqlRows struct {
	rows          pgx.Rows
	types         *pgtype.Map
	funcs         []func([]byte) (driver.Value, error)
	pending, more bool // the first row, read by QueryContext
}

func (r *sqlRows) Columns() []string {
	fds := r.rows.FieldDescriptions()
	names := make([]string, len(fds))
	for i, fd := range fds {
		names[i] = fd.Name
	}
	return names
}

// ColumnTypeDatabaseTypeName returns the column's type name in upper case,
// as pgx's stdlib does, or its OID when the type is not known.
func (r *sqlRows) ColumnTypeDatabaseTypeName(i int) string {
	oid := r.rows.FieldDescriptions()[i].DataTypeOID
	if t, ok := r.types.TypeForOID(oid); ok {
		return strings.ToUpper(t.Name)
	}
	return strconv.FormatUint(uint64(oid), 10)
}

func (r *sqlRows) Close() error {
	r.rows.Close()
	return r.rows.Err()
}

func (r *sqlRows) Next(dest []driver.Value) error {
	more := r.more
	if r.pending {
		r.pending = false
	} else {
		more = r.rows.Next()
	}
	if !more {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return io.EOF
	}
	if r.funcs == nil {
		fds := r.rows.FieldDescriptions()
		r.funcs = make([]func([]byte) (driver.Value, error), len(fds))
		for i, fd := range fds {
			r.funcs[i] = valueFunc(r.types, fd)
		}
	}
	for i, raw := range r.rows.RawValues() {
		if raw == nil {
			dest[i] = nil
			continue
		}
		v, err := r.funcs[i](raw)
		if err != nil {
			return fmt.Errorf("pgtenant: column %q: %w", r.rows.FieldDescriptions()[i].Name, err)
		}
		dest[i] = v
	}
	return nil
}

// valueFunc returns the conversion of a column's raw value into a
// database/sql value: Go values for the types sqlResultFormats asks in
// binary, []byte for json, jsonb and xml, the text for everything else.
func valueFunc(m *pgtype.Map, fd pgconn.FieldDescription) func([]byte) (driver.Value, error) {
	switch fd.DataTypeOID {
	case pgtype.BoolOID:
		return scanAs(m, fd, func(v bool) (driver.Value, error) { return v, nil })
	case pgtype.ByteaOID, pgtype.JSONOID, pgtype.JSONBOID, pgtype.XMLOID:
		return scanAs(m, fd, func(v []byte) (driver.Value, error) { return v, nil })
	case pgtype.CIDOID, pgtype.OIDOID, pgtype.XIDOID:
		return scanAs(m, fd, func(v pgtype.Uint32) (driver.Value, error) { return v.Value() })
	case pgtype.DateOID:
		return scanAs(m, fd, func(v pgtype.Date) (driver.Value, error) { return v.Value() })
	case pgtype.Float4OID:
		return scanAs(m, fd, func(v float32) (driver.Value, error) { return float64(v), nil })
	case pgtype.Float8OID:
		return scanAs(m, fd, func(v float64) (driver.Value, error) { return v, nil })
	case pgtype.Int2OID:
		return scanAs(m, fd, func(v int16) (driver.Value, error) { return int64(v), nil })
	case pgtype.Int4OID:
		return scanAs(m, fd, func(v int32) (driver.Value, error) { return int64(v), nil })
	case pgtype.Int8OID:
		return scanAs(m, fd, func(v int64) (driver.Value, error) { return v, nil })
	case pgtype.TimestampOID:
		return scanAs(m, fd, func(v pgtype.Timestamp) (driver.Value, error) { return v.Value() })
	case pgtype.TimestamptzOID:
		return scanAs(m, fd, func(v pgtype.Timestamptz) (driver.Value, error) { return v.Value() })
	}
	return scanAs(m, fd, func(v string) (driver.Value, error) { return v, nil })
}

// scanAs scans a column into T with a plan made once, then converts it.
func scanAs[T any](m *pgtype.Map, fd pgconn.FieldDescription, conv func(T) (driver.Value, error)) func([]byte) (driver.Value, error) {
	var v T
	plan := m.PlanScan(fd.DataTypeOID, fd.Format, &v)
	return func(raw []byte) (driver.Value, error) {
		if err := plan.Scan(raw, &v); err != nil {
			return nil, err
		}
		return conv(v)
	}
}
