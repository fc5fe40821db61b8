package pgtenant

import (
	"container/list"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The per-connection statement cache: what the pool knows of each
// connection — the statements prepared on it per tenant schema, least
// recently used first to go, the scope and BEGIN statements, the reused
// Batch, and whether a statement may have left session state on it.

// stmtKey identifies a statement prepared for one tenant schema. Statements
// are prepared per schema so each is parsed and planned against that
// schema's tables: a statement is never re-planned when tenants alternate on
// a connection, and tenants whose tables differ in column types never share
// a plan (SQLSTATE 0A000, "cached plan must not change result type").
type stmtKey struct {
	schema string // scope.key
	sql    string
}

type stmtEntry struct {
	key stmtKey
	sd  *pgconn.StatementDescription
}

// connState is what the pool remembers about one connection. A connection is
// used by one goroutine at a time, so it needs no lock.
type connState struct {
	stmts   map[stmtKey]*list.Element // prepared statements, least recently used last
	lru     list.List
	seq     uint64
	garbage []string // statements to deallocate with the next prepare
	scopeSD *pgconn.StatementDescription
	begins  map[string]*pgconn.StatementDescription // BEGIN statements by SQL
	eqb     pgx.ExtendedQueryBuilder
	// named are the statements prepared by name in the current transaction
	// or session ([Tx.Prepare]); they are deallocated when it ends.
	named map[string]*pgconn.StatementDescription
	// wire is the Batch every statement on the connection is written with
	// (see connState.batch).
	wire pgconn.Batch
	// out is the connection's wire (sender.go), reused like wire.
	out wire
	// simpleVals and simpleBuf hold a statement's arguments encoded for
	// the simple protocol.
	simpleVals [][]byte
	simpleBuf  []byte
	// dirty is set when a statement's command tag says it may have left
	// session state that the lexer did not expect: the connection is then
	// closed instead of returned to the pool.
	dirty bool
	// base is what the connection held when it was made (backstop.go).
	base connBaseline
	// unsure: a checked statement ran in the current transaction, so
	// the session check follows its end.
	unsure bool
	// lease: what the connection owes its tenant's budget while it is out
	// (limits.go).
	lease lease
	// unscoped: the connection is out through Pool.Unscoped, counted
	// against the gate (countUnscoped).
	unscoped bool
}

func (p *Pool) state(c *pgx.Conn) *connState {
	if st, ok := p.conns.Load(c); ok {
		return st.(*connState)
	}
	st := &connState{stmts: make(map[stmtKey]*list.Element)}
	p.conns.Store(c, st)
	return st
}

// observe notes the command tag of a statement of class cls: one that may
// have left session state the lexer did not expect marks the connection.
func (st *connState) observe(cls *class, tag pgconn.CommandTag) {
	if cls.leaves(tag.String()) {
		st.dirty = true
	}
}

// lookup returns the statement prepared for key, if any.
func (st *connState) lookup(key stmtKey) *pgconn.StatementDescription {
	el, ok := st.stmts[key]
	if !ok {
		return nil
	}
	st.lru.MoveToFront(el)
	return el.Value.(*stmtEntry).sd
}

// settle is where a statement's error meets the cache: a stale statement
// (see isStaleStatement) is forgotten, so its next use prepares it afresh.
// Every path that reads a statement's result calls it; whether to send the
// statement once more is the caller's (only where nothing reached the
// caller and no transaction was aborted: Pool.Exec, Pool.Query,
// Pool.QueryRow).
func (st *connState) settle(key stmtKey, err error) {
	if isStaleStatement(err) {
		st.forget(key)
	}
}

// forget drops key after the server reported its statement unusable (the
// schema's tables changed under it, or it was deallocated), so the next use
// prepares it again; the old statement is deallocated with the next prepare.
func (st *connState) forget(key stmtKey) {
	el, ok := st.stmts[key]
	if !ok {
		return
	}
	st.lru.Remove(el)
	delete(st.stmts, key)
	st.garbage = append(st.garbage, el.Value.(*stmtEntry).sd.Name)
}
