package pgtenant

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Tracing: the pool calls the pgx tracers of its ConnConfig as pgx's own
// conn.go does, with the caller's SQL, for the statements it sends itself.

// traceStart calls the pool's QueryTracer, if any, with the caller's SQL.
func (p *Pool) traceStart(ctx context.Context, c *pgx.Conn, sql string, args []any) context.Context {
	if p.qt == nil {
		return ctx
	}
	return p.qt.TraceQueryStart(ctx, c, pgx.TraceQueryStartData{SQL: sql, Args: args})
}

// traceEnd ends what traceStart began.
func (p *Pool) traceEnd(ctx context.Context, c *pgx.Conn, tag pgconn.CommandTag, err error) {
	if p.qt != nil {
		p.qt.TraceQueryEnd(ctx, c, pgx.TraceQueryEndData{CommandTag: tag, Err: err})
	}
}

// traceBeginStart traces the BEGIN that travels with a transaction's first
// statement as pgx traces its own Begin: a query "begin" (with the options),
// started before the statement's. It returns the context for
// traceBeginEnd, or nil when there is nothing to trace.
func (p *Pool) traceBeginStart(ctx context.Context, c *pgx.Conn, s step, opts pgx.TxOptions) context.Context {
	if p.qt == nil || s != withBegin {
		return nil
	}
	return p.qt.TraceQueryStart(ctx, c, pgx.TraceQueryStartData{SQL: beginSQL(opts)})
}

// traceBeginEnd ends what traceBeginStart began: BEGIN ran if began, or
// failed with err.
func (p *Pool) traceBeginEnd(ctx context.Context, c *pgx.Conn, s step, began bool, err error) {
	if ctx == nil {
		return
	}
	if began {
		p.qt.TraceQueryEnd(ctx, c, pgx.TraceQueryEndData{CommandTag: pgconn.NewCommandTag("BEGIN")})
		return
	}
	if err == nil {
		err = errors.New("pgtenant: BEGIN was not sent")
	}
	p.qt.TraceQueryEnd(ctx, c, pgx.TraceQueryEndData{Err: err})
}
