package pgtenant

import (
	"context"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// How statements reach the server. A Pool chooses, once in New, a sender
// for its exec mode and Citus mode, and every method of Pool, Tx, Conn,
// their batches and the database/sql connector goes through it: acquire,
// send, release. A call that names an exec mode of its own (a
// pgx.QueryExecMode argument) picks the pool's sender for that mode, not
// another path.
//
// A sender is an encoder — how a statement, BEGIN, the scope statement and
// the backstop's checks are written — and a carrier — what carries the
// tenant beyond the server the pool talks to: nothing on PostgreSQL, the
// SET LOCALs Citus forwards to its workers in Citus mode (citus.go). All
// three encoders write to a wire (a pgconn.Batch, or one simple-protocol
// query text) and read one *pgconn.MultiResultReader back, so the statement
// path (statement.go) reads every mode's results the same way.

// sender is one (encoder, carrier) pair.
type sender struct {
	enc encoder
	car carrier
}

// encoderKind indexes Pool.senders.
type encoderKind uint8

const (
	preparedKind encoderKind = iota // the prepared modes: by description, prepared per tenant schema
	execKind                        // QueryExecModeExec: parameterised text
	simpleKind                      // QueryExecModeSimpleProtocol: arguments written into the text
	kinds
)

// kindOf is the encoder for an exec mode.
func kindOf(mode pgx.QueryExecMode) encoderKind {
	switch mode {
	case pgx.QueryExecModeExec:
		return execKind
	case pgx.QueryExecModeSimpleProtocol:
		return simpleKind
	}
	return preparedKind
}

// newEncoders builds the pool's three encoders (in New, before any
// connection: AfterConnect uses the pool's own).
func (p *Pool) newEncoders(mode pgx.QueryExecMode) {
	p.kind = kindOf(mode)
	p.encs = [kinds]encoder{
		preparedKind: &preparedEncoder{p: p},
		execKind:     &execEncoder{textEncoder{p: p}},
		simpleKind:   &simpleEncoder{textEncoder: textEncoder{p: p}},
	}
}

// chooseSenders pairs the encoders with the carrier once the pool's Citus
// mode is known (its first connection tells), the pool's own sender as
// p.send. With newEncoders, this is the one place that looks at the exec
// mode and Citus mode.
func (p *Pool) chooseSenders(citus bool) {
	var car carrier = plainCarrier{}
	if citus {
		car = citusCarrier{p: p}
		p.encs[simpleKind] = &simpleEncoder{textEncoder: textEncoder{p: p}, split: true}
	}
	for k := range kinds {
		p.senders[k] = sender{enc: p.encs[k], car: car}
	}
	p.send = &p.senders[p.kind]
}

// senderFor returns the sender for a call whose leading options (see
// splitCall) are in args: the pool's, unless the call names an exec mode.
func (p *Pool) senderFor(args []any) *sender {
	if len(args) == 0 {
		return p.send
	}
	if mode := callMode(args); mode != 0 {
		return &p.senders[kindOf(mode)]
	}
	return p.send
}

// encoder writes statements for one exec mode.
type encoder interface {
	// connect readies a new connection: prepares what the encoder sends by
	// description. It runs in AfterConnect, before any tenant's statement.
	connect(ctx context.Context, c *pgx.Conn, st *connState) error
	// wire returns st's wire, emptied, for a statement on c.
	wire(c *pgx.Conn, st *connState, s step) *wire
	// begin queues BEGIN for opts.
	begin(ctx context.Context, c *pgx.Conn, st *connState, w *wire, opts pgx.TxOptions) error
	// scope queues the scope statement for sc (the carrier's statements
	// follow it).
	scope(ctx context.Context, c *pgx.Conn, st *connState, w *wire, sc scope) error
	// ready readies the statement of key for a send after s and returns
	// its description: the prepared encoder prepares a statement new on c
	// in one round trip, which carries BEGIN and the scope too where s asks
	// for them (began: that BEGIN ran). The others prepare nothing.
	ready(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, key stmtKey, s step, opts pgx.TxOptions) (*pgconn.StatementDescription, bool, error)
	// readyBatch prepares a batch's queries new on c (cold), together.
	readyBatch(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, cold []stmtKey, s step) error
	// stmt queues key's SQL with args (led by result-format options; see
	// splitCall), by d where ready returned one.
	stmt(c *pgx.Conn, st *connState, w *wire, d *pgconn.StatementDescription, key stmtKey, args []any, s step) error
	// guard queues the backstop's guard (backstop.go) and says how many
	// results it adds.
	guard(w *wire, st *connState, sc scope) int
	// session queues the backstop's session check.
	session(w *wire, st *connState)
}

// wire is what one round trip writes: a pgconn.Batch (the extended
// protocol), or a simple-protocol query text, or — for the simple protocol
// in Citus mode — a Batch that carries BEGIN and the scope, then the text in
// a message of its own (see citusCarrier.separateScope).
type wire struct {
	b *pgconn.Batch
	// text holds the statements written as one simple-protocol query,
	// separated by "\n;" as pgx separates a batch's.
	text []byte
	// toText: statements from now on go to text.
	toText bool
	// head counts the statements in b.
	head int
	err  error
}

// params queues sql with text parameters (nil: NULL).
func (w *wire) params(sql string, values [][]byte) {
	if !w.toText {
		w.b.ExecParams(sql, values, nil, nil, nil)
		w.head++
		return
	}
	w.textStmt(sql, values)
}

// textStmt appends sql, with values written into it, to the query text.
func (w *wire) textStmt(sql string, values [][]byte) {
	if len(w.text) > 0 {
		w.text = append(w.text, "\n;"...)
	}
	if len(values) == 0 {
		if !utf8.ValidString(sql) && w.err == nil {
			w.err = errSimpleUTF8
		}
		w.text = append(w.text, sql...)
		return
	}
	var err error
	if w.text, err = appendSimple(w.text, sql, values); err != nil && w.err == nil {
		w.err = err
	}
}

// statement queues a prepared statement.
func (w *wire) statement(sd *pgconn.StatementDescription, values [][]byte, paramFormats, resultFormats []int16) {
	w.b.ExecStatement(sd, values, paramFormats, resultFormats)
	w.head++
}

// send writes the first message: the Batch, or the text if the Batch is
// empty. next sends the text after a Batch that carried the scope.
func (w *wire) send(ctx context.Context, c *pgconn.PgConn) *pgconn.MultiResultReader {
	if w.head > 0 {
		return c.ExecBatch(ctx, w.b)
	}
	sent := string(w.text)
	w.text = nil
	return c.Exec(ctx, sent)
}

// next returns the reader for the rest of the wire: mrr itself, or, where
// the text follows a Batch whose results were read, the text's after mrr is
// closed.
func (w *wire) next(ctx context.Context, c *pgconn.PgConn, mrr *pgconn.MultiResultReader) (*pgconn.MultiResultReader, error) {
	if w.head == 0 || len(w.text) == 0 {
		return mrr, nil
	}
	if err := mrr.Close(); err != nil {
		return nil, err
	}
	sent := string(w.text)
	w.text = nil
	return c.Exec(ctx, sent), nil
}
