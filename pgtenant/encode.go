package pgtenant

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The three encoders of sender.go. Each writes BEGIN, the scope statement,
// the caller's statement and the backstop's checks for one exec mode; the
// prepared one sends what it can by description.

// emptyWire returns st's wire for a statement on c, emptied, its statements
// going to the Batch (toText false) or the text.
func emptyWire(c *pgx.Conn, st *connState, toText bool) *wire {
	w := &st.out
	w.b = st.batch(c.PgConn())
	if cap(w.text) > maxKeptBatch {
		w.text = nil
	}
	w.text, w.toText, w.head, w.err = w.text[:0], toText, 0, nil
	return w
}

// preparedEncoder is for the prepared exec modes: each statement is
// prepared per (tenant schema, SQL) on each connection, parsed after the
// tenant's search_path is set, and sent by description.
type preparedEncoder struct{ p *Pool }

func (e *preparedEncoder) connect(ctx context.Context, c *pgx.Conn, st *connState) error {
	p := e.p
	sd, err := c.Prepare(ctx, scopeStmt, p.scopeSQL())
	if err != nil {
		return fmt.Errorf("pgtenant: prepare scope statement: %w", err)
	}
	st.scopeSD = sd
	if st.base.guardSD, err = c.Prepare(ctx, guardStmt, p.bs.guardScope); err != nil {
		return fmt.Errorf("pgtenant: prepare the backstop: %w", err)
	}
	if st.base.guardRoleSD, err = c.Prepare(ctx, guardRoleStmt, p.bs.guardRole); err != nil {
		return fmt.Errorf("pgtenant: prepare the backstop: %w", err)
	}
	if st.base.sessionSD, err = c.Prepare(ctx, sessionStmt, p.bs.session); err != nil {
		return fmt.Errorf("pgtenant: prepare the backstop: %w", err)
	}
	return nil
}

func (e *preparedEncoder) wire(c *pgx.Conn, st *connState, _ step) *wire {
	return emptyWire(c, st, false)
}

func (e *preparedEncoder) begin(ctx context.Context, c *pgx.Conn, st *connState, w *wire, opts pgx.TxOptions) error {
	if opts.BeginQuery != "" {
		w.params(opts.BeginQuery, nil)
		return nil
	}
	sd, err := e.p.beginStatement(ctx, c, st, beginSQL(opts))
	if err != nil {
		return err
	}
	w.statement(sd, nil, nil, nil)
	return nil
}

func (e *preparedEncoder) scope(ctx context.Context, c *pgx.Conn, st *connState, w *wire, sc scope) error {
	if err := e.p.ensureScopeSD(ctx, c, st); err != nil {
		return err
	}
	w.statement(st.scopeSD, e.p.scopeParams(sc).values, nil, nil)
	return nil
}

func (e *preparedEncoder) ready(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, key stmtKey, s step, opts pgx.TxOptions) (*pgconn.StatementDescription, bool, error) {
	if s == inScope && st.named != nil {
		if d := st.named[key.sql]; d != nil {
			return d, false, nil
		}
	}
	if d := st.lookup(key); d != nil {
		return d, false, nil
	}
	sds, began, err := e.p.prepare(ctx, c, st, sd, sc, []stmtKey{key}, s, opts)
	if err != nil {
		return nil, began, err
	}
	return sds[0], began, nil
}

func (e *preparedEncoder) readyBatch(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, cold []stmtKey, s step) error {
	_, _, err := e.p.prepare(ctx, c, st, sd, sc, cold, s, pgx.TxOptions{})
	return err
}

func (e *preparedEncoder) stmt(c *pgx.Conn, st *connState, w *wire, d *pgconn.StatementDescription, key stmtKey, args []any, s step) error {
	if d == nil {
		// A batch's query, prepared by readyBatch.
		if d = st.named[key.sql]; s != inScope || d == nil {
			d = st.lookup(key)
		}
		if d == nil {
			return errors.New("the batch has more distinct statements than Config.StatementCacheCapacity")
		}
	}
	formats, byOID, args := resultFormats(args)
	if err := st.eqb.Build(c.TypeMap(), d, args); err != nil {
		return fmt.Errorf("pgtenant: encode arguments: %w", err)
	}
	if byOID != nil { // as pgx applies them: by each result column's type
		formats = make(pgx.QueryResultFormats, len(d.Fields))
		for i, f := range d.Fields {
			formats[i] = byOID[f.DataTypeOID]
		}
	}
	if formats == nil {
		formats = st.eqb.ResultFormats
	}
	w.statement(d, st.eqb.ParamValues, st.eqb.ParamFormats, formats)
	return nil
}

func (e *preparedEncoder) guard(w *wire, st *connState, sc scope) int {
	st.unsure = true
	a := e.p.guardArgs(st, sc)
	if sd := st.base.guardSD; sd != nil {
		w.statement(sd, [][]byte{a[0], a[1], st.base.searchPath}, nil, nil)
		w.statement(st.base.guardRoleSD, [][]byte{a[2], a[1]}, nil, nil)
		return 2
	}
	w.params(e.p.bs.guard, a)
	return 1
}

func (e *preparedEncoder) session(w *wire, st *connState) {
	st.unsure = false
	if sd := st.base.sessionSD; sd != nil {
		w.statement(sd, [][]byte{st.base.session}, nil, nil)
		return
	}
	w.params(e.p.bs.session, [][]byte{st.base.session})
}

// textEncoder is what the exec and simple encoders share: nothing is
// prepared, and BEGIN, the scope and the backstop's checks go as SQL with
// text parameters (in the simple protocol, written into the text).
type textEncoder struct{ p *Pool }

func (e *textEncoder) connect(context.Context, *pgx.Conn, *connState) error { return nil }

func (e *textEncoder) begin(_ context.Context, _ *pgx.Conn, _ *connState, w *wire, opts pgx.TxOptions) error {
	w.params(beginSQL(opts), nil)
	return nil
}

func (e *textEncoder) scope(_ context.Context, _ *pgx.Conn, _ *connState, w *wire, sc scope) error {
	w.params(e.p.scopeSQL(), e.p.scopeParams(sc).values)
	return nil
}

func (e *textEncoder) ready(context.Context, *pgx.Conn, *connState, *sender, scope, stmtKey, step, pgx.TxOptions) (*pgconn.StatementDescription, bool, error) {
	return nil, false, nil
}

func (e *textEncoder) readyBatch(context.Context, *pgx.Conn, *connState, *sender, scope, []stmtKey, step) error {
	return nil
}

func (e *textEncoder) guard(w *wire, st *connState, sc scope) int {
	st.unsure = true
	w.params(e.p.bs.guard, e.p.guardArgs(st, sc))
	return 1
}

func (e *textEncoder) session(w *wire, st *connState) {
	st.unsure = false
	w.params(e.p.bs.session, [][]byte{st.base.session})
}

// execEncoder is for QueryExecModeExec (behind a pooler, nothing
// prepared): the statement goes as parameterised text, its arguments
// encoded as pgx encodes them in that mode. Result formats are ignored, as
// pgx ignores them there: nothing is described, so results come as text.
type execEncoder struct{ textEncoder }

func (e *execEncoder) wire(c *pgx.Conn, st *connState, _ step) *wire { return emptyWire(c, st, false) }

func (e *execEncoder) stmt(c *pgx.Conn, st *connState, w *wire, _ *pgconn.StatementDescription, key stmtKey, args []any, _ step) error {
	_, _, args = resultFormats(args)
	if err := st.eqb.Build(c.TypeMap(), nil, args); err != nil {
		return fmt.Errorf("pgtenant: encode arguments: %w", err)
	}
	w.b.ExecParams(key.sql, st.eqb.ParamValues, nil, st.eqb.ParamFormats, st.eqb.ResultFormats)
	w.head++
	return nil
}

// simpleEncoder is for the simple protocol: the whole round trip is one
// query text, the arguments written into it (simpletext.go). Result formats
// are ignored, as pgx ignores them there. With split (Citus mode), BEGIN,
// the scope and the SET LOCALs go first as a Batch of their own, and the
// text follows once they ran.
type simpleEncoder struct {
	textEncoder
	split bool
}

// wire: BEGIN goes in a Batch of its own, before the text, like the scope
// in Citus mode. PostgreSQL parses a whole query text before it runs any of
// it, so a syntax error in the statement would otherwise undo the BEGIN
// too, where pgx's transaction is begun and then aborted by the statement.
func (e *simpleEncoder) wire(c *pgx.Conn, st *connState, s step) *wire {
	return emptyWire(c, st, !e.split && s != withBegin)
}

func (e *simpleEncoder) stmt(c *pgx.Conn, st *connState, w *wire, _ *pgconn.StatementDescription, key stmtKey, args []any, _ step) error {
	if err := simpleReady(c.PgConn().ParameterStatus); err != nil {
		return err
	}
	_, _, args = resultFormats(args)
	var err error
	if st.simpleVals, st.simpleBuf, err = encodeSimple(c.TypeMap(), args, st.simpleVals, st.simpleBuf[:0]); err != nil {
		return err
	}
	w.toText = true
	if len(args) == 0 {
		w.textStmt(key.sql, nil) // as pgx sends a statement without arguments: as it is
		return nil
	}
	w.textStmt(key.sql, st.simpleVals)
	return w.err
}
