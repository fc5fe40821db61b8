package pgtenant

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The one statement path of Pool, Tx and Conn, at the pgconn level: run
// writes [BEGIN], [the scope statement] and the statement in one
// pgconn.Batch, as one write. With prepared statements (the default exec
// modes) a statement is prepared per (tenant schema, SQL) on each
// connection, parsed after the tenant's search_path is set, and sent by
// description (prepare, run); in QueryExecModeExec everything goes as
// parameterised text (runExec). execStmt, queryStmt and rowStmt wrap run
// with tracing, the session-state backstop and stale-statement handling.
// pgx.QueryResultFormats and QueryResultFormatsByOID (what pgx's
// database/sql driver passes) travel ahead of the arguments and run applies
// them, as pgx does (ignored in QueryExecModeExec, as in pgx); an explicit
// pgx.QueryExecMode argument picks runExec or the prepared path for its
// call. Only the simple protocol (the pool's, or a call's) goes through pgx
// itself (pool.go: send, beginScoped; batch.go: sendText).

// step says what travels before a statement in its round trip.
type step uint8

const (
	// inScope: the transaction or session already carries the scope.
	inScope step = iota
	// withScope: the scope statement, in the statement's implicit transaction.
	withScope
	// withBegin: BEGIN, then the scope statement; the transaction starts here.
	withBegin
)

// prepare prepares the statements of keys on c in one round trip, after
// what s says, so that each is parsed under the tenant's search_path. It
// never sends BEGIN or ROLLBACK of its own: inside a caller's transaction the
// scope is already set. began reports whether a BEGIN it sent ran: the
// transaction is then open, whatever failed after it, exactly as if pgx had
// begun it and a statement then failed.
func (p *Pool) prepare(ctx context.Context, c *pgx.Conn, st *connState, sc scope, keys []stmtKey, s step, opts pgx.TxOptions) (sds []*pgconn.StatementDescription, began bool, err error) {
	var beginSD *pgconn.StatementDescription
	if s == withBegin && opts.BeginQuery == "" {
		if beginSD, err = p.beginStatement(ctx, c, st, beginSQL(opts)); err != nil {
			return nil, false, err
		}
	}
	if s != inScope {
		if err := p.ensureScopeSD(ctx, c, st); err != nil {
			return nil, false, err
		}
	}
	names := make([]string, len(keys))
	for i := range keys {
		for len(st.stmts) >= p.cfg.capacity {
			old := st.lru.Back()
			st.lru.Remove(old)
			e := old.Value.(*stmtEntry)
			delete(st.stmts, e.key)
			st.garbage = append(st.garbage, e.sd.Name)
		}
		st.seq++
		names[i] = "tenancy_" + strconv.FormatUint(st.seq, 10)
	}
	if p.pt != nil {
		// Each end gets the context its start returned (tracelog, for one,
		// reads its data from it).
		tctxs := make([]context.Context, len(keys))
		for i, k := range keys {
			tctxs[i] = p.pt.TracePrepareStart(ctx, c, pgx.TracePrepareStartData{Name: names[i], SQL: k.sql})
		}
		defer func() {
			for _, tctx := range tctxs {
				p.pt.TracePrepareEnd(tctx, c, pgx.TracePrepareEndData{Err: err})
			}
		}()
	}
	pl := c.PgConn().StartPipeline(ctx)
	// Closing a statement that does not exist is no error, so the garbage
	// goes first, in the same implicit transaction as what follows.
	garbage := st.garbage
	st.garbage = nil
	for _, name := range garbage {
		pl.SendDeallocate(name)
	}
	switch {
	case s == withBegin && beginSD != nil:
		pl.SendQueryStatement(beginSD, nil, nil, nil)
	case s == withBegin:
		pl.SendQueryParams(opts.BeginQuery, nil, nil, nil, nil)
	}
	sp := p.scopeParams(sc)
	if s != inScope {
		pl.SendQueryStatement(st.scopeSD, sp.values, nil, nil)
	}
	// A transaction begun here carries the tenant to Citus workers from now
	// on; on the pool's path (withScope) this implicit transaction only
	// parses, and the statement's own block sets the tenant.
	citus := p.citus && s == withBegin
	if citus {
		pl.SendQueryParams(citusPropagateSQL, nil, nil, nil, nil)
		pl.SendQueryParams(sp.citusSet, nil, nil, nil, nil)
	}
	for i, k := range keys {
		pl.SendPrepare(names[i], k.sql, nil)
	}
	if err := pl.Sync(); err != nil {
		_ = pl.Close()
		return nil, false, err
	}
	fail := func(err error) ([]*pgconn.StatementDescription, bool, error) {
		_ = pl.Close()
		return nil, began, err
	}
	for range garbage {
		if _, err := pl.GetResults(); err != nil {
			return fail(err)
		}
	}
	if s == withBegin {
		if err := pipelineResult(pl); err != nil {
			return fail(err)
		}
		began = true
	}
	if s != inScope {
		if err := pipelineResult(pl); err != nil {
			return fail(scopeFailed(ctx, c, sc, err))
		}
	}
	for i := 0; citus && i < citusResults; i++ {
		if err := pipelineResult(pl); err != nil {
			return fail(scopeFailed(ctx, c, sc, err))
		}
	}
	sds = make([]*pgconn.StatementDescription, len(keys))
	for i, k := range keys {
		res, err := pl.GetResults()
		if err != nil {
			return fail(err)
		}
		sd, ok := res.(*pgconn.StatementDescription)
		if !ok {
			return fail(fmt.Errorf("pgtenant: prepare: unexpected pipeline result %T", res))
		}
		sd.Name, sd.SQL = names[i], k.sql
		sds[i] = sd
		st.stmts[k] = st.lru.PushFront(&stmtEntry{key: k, sd: sd})
	}
	if err := pl.Close(); err != nil {
		return nil, began, err
	}
	return sds, began, nil
}

// pipelineResult reads one statement's result from pl and returns its error.
func pipelineResult(pl *pgconn.Pipeline) error {
	res, err := pl.GetResults()
	if err != nil {
		return err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return fmt.Errorf("pgtenant: unexpected pipeline result %T", res)
	}
	_, err = rr.Close()
	return err
}

// run sends sql with args on c, after what s says, in one write, and returns
// the reader positioned at the statement's result. A statement new on c for
// the tenant's schema is prepared first, in one more round trip that carries
// BEGIN and the scope too where s asks for them. began reports whether a
// BEGIN sent here ran.
func (p *Pool) run(ctx context.Context, c *pgx.Conn, st *connState, sc scope, cls *class, sql string, args []any, s step, opts pgx.TxOptions) (mrr *pgconn.MultiResultReader, began bool, err error) {
	// The pool's exec mode, unless the call names one (see statementPath).
	if mode := callMode(args); mode == pgx.QueryExecModeExec || mode == 0 && !p.prepared {
		return p.runExec(ctx, c, st, sc, cls, sql, args, s, opts)
	}
	var sd *pgconn.StatementDescription
	if s == inScope && st.named != nil {
		sd = st.named[sql]
	}
	if sd == nil {
		key := stmtKey{schema: sc.key, sql: sql}
		if sd = st.lookup(key); sd == nil {
			var sds []*pgconn.StatementDescription
			sds, began, err = p.prepare(ctx, c, st, sc, []stmtKey{key}, s, opts)
			if err != nil {
				return nil, began, err
			}
			sd = sds[0]
			if began {
				s = inScope // BEGIN and the scope ran with the prepare
			}
		}
	}
	if s != inScope {
		if err := p.ensureScopeSD(ctx, c, st); err != nil {
			return nil, began, err
		}
	}
	formats, byOID, args := resultFormats(args)
	if err := st.eqb.Build(c.TypeMap(), sd, args); err != nil {
		return nil, began, fmt.Errorf("pgtenant: encode arguments: %w", err)
	}
	if byOID != nil { // as pgx applies them: by each result column's type
		formats = make(pgx.QueryResultFormats, len(sd.Fields))
		for i, f := range sd.Fields {
			formats[i] = byOID[f.DataTypeOID]
		}
	}
	if formats == nil {
		formats = st.eqb.ResultFormats
	}
	b := st.batch(c.PgConn())
	if s == withBegin || p.block(s, cls) {
		if err := p.queueBegin(ctx, c, st, b, opts); err != nil {
			return nil, false, err
		}
	}
	if s != inScope {
		p.queueScopeStmt(b, st.scopeSD, sc)
	}
	b.ExecStatement(sd, st.eqb.ParamValues, st.eqb.ParamFormats, formats)
	p.queueAfter(b, st, sc, cls, s)
	var sent bool
	mrr, sent, err = p.sendStmt(ctx, c, sc, cls, b, s)
	// A BEGIN that ran with the prepare, or with the statement.
	return mrr, began || sent, err
}

// runExec is run for a pool in QueryExecModeExec (behind a pooler, nothing
// prepared): BEGIN, the scope statement and sql go as parameterised text in
// one batch, the arguments encoded as pgx encodes them in that mode.
func (p *Pool) runExec(ctx context.Context, c *pgx.Conn, st *connState, sc scope, cls *class, sql string, args []any, s step, opts pgx.TxOptions) (*pgconn.MultiResultReader, bool, error) {
	// Result formats are ignored in this mode, as pgx ignores them: nothing
	// is described, so results come as text.
	_, _, args = resultFormats(args)
	if err := st.eqb.Build(c.TypeMap(), nil, args); err != nil {
		return nil, false, fmt.Errorf("pgtenant: encode arguments: %w", err)
	}
	b := st.batch(c.PgConn())
	if s == withBegin || p.block(s, cls) {
		b.ExecParams(beginSQL(opts), nil, nil, nil, nil)
	}
	if s != inScope {
		p.queueScopeStmt(b, nil, sc)
	}
	b.ExecParams(sql, st.eqb.ParamValues, nil, st.eqb.ParamFormats, st.eqb.ResultFormats)
	p.queueAfter(b, st, sc, cls, s)
	return p.sendStmt(ctx, c, sc, cls, b, s)
}

// queueAfter queues what follows a statement of class cls sent after s: the
// guard if the backstop checks it, and, where the statement runs in a block
// of its own, COMMIT and then the session check.
func (p *Pool) queueAfter(b *pgconn.Batch, st *connState, sc scope, cls *class, s step) {
	if cls.check {
		p.queueGuard(b, st, sc)
	}
	if p.block(s, cls) {
		b.ExecParams("commit", nil, nil, nil, nil)
		if cls.check {
			p.queueSession(b, st)
		}
	}
}

// sendStmt writes b — [BEGIN], [scope, [Citus SET LOCALs]], the statement,
// [COMMIT] — and reads up to the statement's result. began reports whether a
// BEGIN in b ran.
func (p *Pool) sendStmt(ctx context.Context, c *pgx.Conn, sc scope, cls *class, b *pgconn.Batch, s step) (mrr *pgconn.MultiResultReader, began bool, err error) {
	mrr = c.PgConn().ExecBatch(ctx, b)
	if s == withBegin || p.block(s, cls) {
		if err := readResult(mrr); err != nil {
			return nil, false, err
		}
		began = true
	}
	if s != inScope {
		if err := p.scopeResults(ctx, c, sc, mrr); err != nil {
			return nil, began, err
		}
	}
	if !mrr.NextResult() {
		return nil, began, closeErr(mrr)
	}
	return mrr, began, nil
}

// execStmt runs one statement on c after what s says (see run), traced, and
// returns its command tag, having checked the tag for session state and
// forgotten a stale statement. began reports whether a BEGIN sent with it
// ran. Pool, Tx and Conn share it.
func (p *Pool) execStmt(ctx context.Context, c *pgx.Conn, st *connState, sc scope, cls *class, sql string, args []any, s step, opts pgx.TxOptions) (ct pgconn.CommandTag, began bool, err error) {
	bctx := p.traceBeginStart(ctx, c, s, opts)
	ctx = p.traceStart(ctx, c, sql, args)
	var mrr *pgconn.MultiResultReader
	mrr, began, err = p.run(ctx, c, st, sc, cls, sql, args, s, opts)
	p.traceBeginEnd(bctx, c, s, began, err)
	if err == nil {
		ct, err = mrr.ResultReader().Close()
		if closeErr := mrr.Close(); err == nil {
			err = closeErr
		}
		err = p.verdict(st, err)
		st.observe(cls, ct)
	}
	p.traceEnd(ctx, c, ct, err)
	st.settle(stmtKey{schema: sc.key, sql: sql}, err)
	p.failed(ctx, c, st, cls, s, err)
	return ct, began, err
}

// queryStmt sends one statement like execStmt and returns its rows, which
// end the trace and call finish (may be nil) when closed.
func (p *Pool) queryStmt(ctx context.Context, c *pgx.Conn, st *connState, sc scope, cls *class, sql string, args []any, s step, opts pgx.TxOptions, finish func(error) error) (*stmtRows, bool, error) {
	key := stmtKey{schema: sc.key, sql: sql}
	bctx := p.traceBeginStart(ctx, c, s, opts)
	ctx = p.traceStart(ctx, c, sql, args)
	mrr, began, err := p.run(ctx, c, st, sc, cls, sql, args, s, opts)
	p.traceBeginEnd(bctx, c, s, began, err)
	if err != nil {
		st.settle(key, err)
		p.traceEnd(ctx, c, pgconn.CommandTag{}, err)
		p.failed(ctx, c, st, cls, s, err)
		return nil, began, err
	}
	if p.block(s, cls) {
		// The rows end a block of the statement's own: a failure seen
		// when they close is handled there.
		inner := finish
		finish = func(err error) error {
			p.failed(ctx, c, st, cls, s, err)
			if inner != nil {
				return inner(err)
			}
			return err
		}
	}
	return &stmtRows{Rows: pgx.RowsFromResultReader(c.TypeMap(), mrr.ResultReader()), mrr: mrr,
		st: st, cls: cls, key: key, conn: c, finish: finish, p: p, tctx: ctx}, began, nil
}

// rowStmt sends one statement like execStmt for QueryRow: the row scans
// straight from the result and ends the trace.
func (p *Pool) rowStmt(ctx context.Context, c *pgx.Conn, st *connState, sc scope, cls *class, sql string, args []any, s step, opts pgx.TxOptions) (*stmtRow, bool) {
	key := stmtKey{schema: sc.key, sql: sql}
	bctx := p.traceBeginStart(ctx, c, s, opts)
	ctx = p.traceStart(ctx, c, sql, args)
	r := &stmtRow{conn: c, st: st, cls: cls, key: key, p: p, ctx: ctx}
	var began bool
	r.mrr, began, r.err = p.run(ctx, c, st, sc, cls, sql, args, s, opts)
	p.traceBeginEnd(bctx, c, s, began, r.err)
	if r.err != nil {
		st.settle(key, r.err)
		p.traceEnd(ctx, c, pgconn.CommandTag{}, r.err)
		p.failed(ctx, c, st, cls, s, r.err)
	}
	return r, began
}

// queueBegin queues the BEGIN statement for opts on b.
func (p *Pool) queueBegin(ctx context.Context, c *pgx.Conn, st *connState, b *pgconn.Batch, opts pgx.TxOptions) error {
	if opts.BeginQuery != "" {
		b.ExecParams(opts.BeginQuery, nil, nil, nil, nil)
		return nil
	}
	sd, err := p.beginStatement(ctx, c, st, beginSQL(opts))
	if err != nil {
		return err
	}
	b.ExecStatement(sd, nil, nil, nil)
	return nil
}

// scopeResults reads the results of the scope statement and, in Citus
// mode, of the SET LOCALs after it (queueScopeStmt); a failure is the scope's.
func (p *Pool) scopeResults(ctx context.Context, c *pgx.Conn, sc scope, mrr *pgconn.MultiResultReader) error {
	n := 1
	if p.citus {
		n += citusResults
	}
	for range n {
		if err := readResult(mrr); err != nil {
			return scopeFailed(ctx, c, sc, err)
		}
	}
	return nil
}

// block reports whether a statement sent after s runs in an explicit block
// of its own, BEGIN to COMMIT: on the pool's path (withScope) in Citus mode,
// so that the tenant's SET LOCAL reaches the workers.
//
// A statement the backstop checks runs in such a block on the pool's path
// too: its session check must follow the COMMIT.
func (p *Pool) block(s step, cls *class) bool { return s == withScope && (p.citus || cls.check) }

// failed handles a statement of class cls, sent after s, that returned err:
// a block of its own that failed is rolled back, and a checked statement
// that failed on the pool's path takes its connection with it — its session
// check did not run, and a failed transaction does not undo everything
// (a session advisory lock, say).
func (p *Pool) failed(ctx context.Context, c *pgx.Conn, st *connState, cls *class, s step, err error) {
	if err == nil {
		return
	}
	if cls.check && s == withScope {
		st.dirty = true
	}
	if p.block(s, cls) && !st.dirty {
		abortBlock(ctx, c)
	}
}

// abortBlock rolls back a transaction block left open on c by a statement
// that failed in it (Citus mode's blocks), or closes c if that fails, so
// that the next statement on c starts clean.
func abortBlock(ctx context.Context, c *pgx.Conn) {
	if c.IsClosed() || c.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resetTimeout)
	defer cancel()
	if _, err := c.PgConn().Exec(ctx, "rollback").ReadAll(); err != nil || c.PgConn().TxStatus() != 'I' {
		_ = c.Close(ctx)
	}
}

// readResult reads the next result of mrr. If it failed, the server skipped
// the rest of the batch, and mrr is closed.
func readResult(mrr *pgconn.MultiResultReader) error {
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
		err = errors.New("pgtenant: the server sent no result")
	}
	return err
}

func closeErr(mrr *pgconn.MultiResultReader) error {
	if err := mrr.Close(); err != nil {
		return err
	}
	return errors.New("pgtenant: the server sent fewer results than statements")
}

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

// beginStatement returns the BEGIN statement for sql prepared on c, preparing
// it on first use: a prepared BEGIN spares the server a parse per
// transaction. Without BeginQuery, TxOptions make at most 16 distinct
// statements.
func (p *Pool) beginStatement(ctx context.Context, c *pgx.Conn, st *connState, sql string) (*pgconn.StatementDescription, error) {
	if sd, ok := st.begins[sql]; ok {
		return sd, nil
	}
	if st.begins == nil {
		st.begins = make(map[string]*pgconn.StatementDescription)
	}
	sd, err := c.PgConn().Prepare(ctx, "tenancy_begin_"+strconv.Itoa(len(st.begins)), sql, nil)
	if err != nil {
		return nil, err
	}
	st.begins[sql] = sd
	return sd, nil
}

// beginSQL is the BEGIN statement for opts, as pgx writes it.
func beginSQL(opts pgx.TxOptions) string {
	if opts.BeginQuery != "" {
		return opts.BeginQuery
	}
	var b strings.Builder
	b.WriteString("begin")
	if opts.IsoLevel != "" {
		b.WriteString(" isolation level " + string(opts.IsoLevel))
	}
	if opts.AccessMode != "" {
		b.WriteString(" " + string(opts.AccessMode))
	}
	if opts.DeferrableMode != "" {
		b.WriteString(" " + string(opts.DeferrableMode))
	}
	return b.String()
}

// isStaleStatement reports whether err says a prepared statement can no
// longer be used as it is: its tables changed type under it (0A000) or it no
// longer exists (26000).
func isStaleStatement(err error) bool {
	if err == nil {
		return false // before the targets below, which escape: no allocation per statement
	}
	var pgErr *pgconn.PgError
	var se *scopeError
	return errors.As(err, &pgErr) && (pgErr.Code == "0A000" || pgErr.Code == "26000") && !errors.As(err, &se)
}

// splitArgs separates the pgx query options that lead args from the
// arguments proper. A QueryRewriter (such as pgx.NamedArgs) is applied here;
// other options (an explicit QueryExecMode, result formats) are returned so
// the caller can take the path that honours them.
func splitArgs(ctx context.Context, sql string, args []any) (string, []any, []any, error) {
	var opts []any
	for len(args) > 0 {
		switch a := args[0].(type) {
		case pgx.QueryRewriter:
			var err error
			sql, args, err = a.RewriteQuery(ctx, nil, sql, args[1:])
			if err != nil {
				return "", nil, nil, err
			}
			continue
		case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID:
			opts = append(opts, a)
			args = args[1:]
			continue
		}
		break
	}
	return sql, args, opts, nil
}

// callArgs is splitArgs for the statement path of Pool, Tx and Conn: result
// formats that statementPath accepts go back ahead of the arguments, for run
// to apply, and opts holds what must go through pgx.
func (p *Pool) callArgs(ctx context.Context, sql string, args []any) (string, []any, []any, error) {
	sql, args, opts, err := splitArgs(ctx, sql, args)
	if err == nil && len(opts) > 0 && p.statementPath(opts) {
		args, opts = append(opts, args...), nil
	}
	return sql, args, opts, err
}

// statementPath reports whether a call with opts (from splitArgs) goes the
// statement path: with none, or, on a pool that does not use the simple
// protocol, with result formats (run applies them; in exec mode they are
// ignored, as pgx ignores them there) and an explicit QueryExecMode other
// than the simple protocol (run sends the call as that mode sends it:
// QueryExecModeExec as parameterised text, the others by a statement
// prepared per tenant schema — what a prepared mode returns does not depend
// on how the description was had). The caller then passes the options
// ahead of the arguments. The simple protocol goes through pgx.
func (p *Pool) statementPath(opts []any) bool {
	if len(opts) == 0 {
		return true
	}
	if p.simple {
		return false
	}
	for _, o := range opts {
		if m, ok := o.(pgx.QueryExecMode); ok && m == pgx.QueryExecModeSimpleProtocol {
			return false
		}
	}
	return true
}

// callMode returns the last QueryExecMode among the options that lead args
// (placed there by callers of statementPath), or 0 when there is none.
func callMode(args []any) pgx.QueryExecMode {
	var mode pgx.QueryExecMode
	for _, a := range args {
		switch a := a.(type) {
		case pgx.QueryExecMode:
			mode = a
		case pgx.QueryResultFormats, pgx.QueryResultFormatsByOID:
		default:
			return mode
		}
	}
	return mode
}

// resultFormats takes the result-format options that lead args (placed
// there by callers of statementPath) and returns them with the arguments
// proper; the last of each kind wins, as in pgx.
func resultFormats(args []any) (pgx.QueryResultFormats, pgx.QueryResultFormatsByOID, []any) {
	var formats pgx.QueryResultFormats
	var byOID pgx.QueryResultFormatsByOID
	for len(args) > 0 {
		switch a := args[0].(type) {
		case pgx.QueryResultFormats:
			formats = a
		case pgx.QueryResultFormatsByOID:
			byOID = a
		case pgx.QueryExecMode: // callMode's
		default:
			return formats, byOID, args
		}
		args = args[1:]
	}
	return formats, byOID, args
}
