package pgtenant

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/rls"
)

// carrier is what carries the tenant beyond the server a pool talks to,
// chosen once in New (chooseSenders): plainCarrier for PostgreSQL, where the
// scope statement is all there is, citusCarrier in Citus mode (see
// CitusMode).
type carrier interface {
	// setLocal is the statement that carries sc's tenant further, built
	// once per tenant into scopeParams ("" for none).
	setLocal(sc scope) string
	// queue queues, after the scope statement, what carries the tenant of
	// sp further; results says how many results that adds.
	queue(w *wire, sp *scopeParams)
	queuePipeline(pl *pgconn.Pipeline, sp *scopeParams)
	results() int
	// ownBlock: a statement on the pool's path runs in an explicit block
	// of its own, BEGIN to COMMIT.
	ownBlock() bool
	// separateScope: BEGIN and the scope must not share a simple-protocol
	// query with the statement.
	separateScope() bool
	// connStep is what a statement of an Acquired Conn carries.
	connStep() step
	// connFinish ends what a Conn's statement leaves open (nil: nothing).
	connFinish(ctx context.Context, c *pgx.Conn) func(error) error
	// checkConn refuses, before I/O, what a Conn cannot send.
	checkConn(c *pgx.Conn, sql string) error
	// beginConn begins a transaction on an Acquired Conn, whose session
	// carries the scope.
	beginConn(ctx context.Context, c *pgx.Conn, st *connState, sp *scopeParams, opts pgx.TxOptions) error
	// copy copies rows in a transaction that carries the scope.
	copy(ctx context.Context, c *pgx.Conn, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

// plainCarrier: PostgreSQL, where the scope statement sets everything.
type plainCarrier struct{}

func (plainCarrier) setLocal(scope) string                        { return "" }
func (plainCarrier) queue(*wire, *scopeParams)                    {}
func (plainCarrier) queuePipeline(*pgconn.Pipeline, *scopeParams) {}
func (plainCarrier) results() int                                 { return 0 }
func (plainCarrier) ownBlock() bool                               { return false }
func (plainCarrier) separateScope() bool                          { return false }
func (plainCarrier) connStep() step                               { return inScope }
func (plainCarrier) connFinish(context.Context, *pgx.Conn) func(error) error {
	return nil
}
func (plainCarrier) checkConn(*pgx.Conn, string) error { return nil }

func (plainCarrier) beginConn(ctx context.Context, c *pgx.Conn, _ *connState, _ *scopeParams, opts pgx.TxOptions) error {
	_, err := c.PgConn().Exec(ctx, beginSQL(opts)).ReadAll()
	return err
}

func (plainCarrier) copy(ctx context.Context, c *pgx.Conn, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	return copyStaged(ctx, c, tableName, columnNames, rowSrc)
}

// citusCarrier: Citus mode. A setting made with set_config stays on the
// coordinator, so every statement runs in an explicit block that also sets
// the tenant with SET LOCAL, which Citus forwards to the workers (with
// citus.propagate_set_commands = 'local', set in the same block).
type citusCarrier struct{ p *Pool }

// citusPropagateSQL makes Citus forward the SET LOCAL statements that follow
// it in the transaction to the workers.
const citusPropagateSQL = rls.CitusPropagateSQL

// citusResults is how many results citusCarrier.queue adds.
const citusResults = 2

func (k citusCarrier) setLocal(sc scope) string {
	// The scope's tenant passed tenant.Validate (see Pool.require).
	return rls.CitusSetLocalSQL(k.p.cfg.setting, sc.tenant.ID)
}

func (citusCarrier) queue(w *wire, sp *scopeParams) {
	w.params(citusPropagateSQL, nil)
	w.params(sp.setLocal, nil)
}

func (citusCarrier) queuePipeline(pl *pgconn.Pipeline, sp *scopeParams) {
	pl.SendQueryParams(citusPropagateSQL, nil, nil, nil, nil)
	pl.SendQueryParams(sp.setLocal, nil, nil, nil, nil)
}

func (citusCarrier) results() int { return citusResults }

// ownBlock: so that the tenant's SET LOCAL reaches the workers.
func (citusCarrier) ownBlock() bool { return true }

// separateScope: Citus forwards a SET LOCAL with the whole query message it
// came in, so it never shares one with other statements.
func (citusCarrier) separateScope() bool { return true }

// connStep: session settings never reach the workers, so each statement of
// a Conn runs in a block of its own that sets the tenant.
func (citusCarrier) connStep() step { return withScope }

// connFinish rolls back a Conn's block that failed.
func (citusCarrier) connFinish(ctx context.Context, c *pgx.Conn) func(error) error {
	return func(err error) error {
		abortBlock(ctx, c)
		return err
	}
}

// checkConn refuses transaction control in SQL sent through a Conn — each
// statement runs in a block of its own there, so a BEGIN would be committed
// at once — and a statement sent while the connection is inside a
// transaction (its Tx's, or one begun on Conn.Conn()).
func (k citusCarrier) checkConn(c *pgx.Conn, sql string) error {
	if k.p.classes.classify(sql).txControl { // cached per SQL text
		return fmt.Errorf("pgtenant: in Citus mode a Conn runs each statement in a transaction block of its own that carries the tenant; transaction control in SQL (%q) is refused: use Conn.Begin", sql)
	}
	if c.PgConn().TxStatus() != 'I' {
		return errors.New("pgtenant: in Citus mode a Conn statement cannot run while a transaction is open on the connection (each runs in a block of its own): send it on the Tx that Conn.Begin returned, and begin transactions with Conn.Begin, not on Conn.Conn()")
	}
	return nil
}

// beginConn sends BEGIN and the SET LOCALs that carry the tenant to the
// workers.
func (k citusCarrier) beginConn(ctx context.Context, c *pgx.Conn, st *connState, sp *scopeParams, opts pgx.TxOptions) error {
	w := emptyWire(c, st, false)
	w.params(beginSQL(opts), nil)
	k.queue(w, sp)
	if _, err := w.send(ctx, c.PgConn()).ReadAll(); err != nil {
		abortBlock(ctx, c)
		return err
	}
	return nil
}

// copy sends the rows as multi-row INSERTs: Citus moves an INSERT ...
// SELECT from a local (staging) table into a distributed one with COPY on
// the worker, which RLS refuses there.
func (citusCarrier) copy(ctx context.Context, c *pgx.Conn, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	target, list, n := copyTarget(tableName, columnNames)
	return copyInserts(ctx, c, target, list, n, rowSrc)
}
