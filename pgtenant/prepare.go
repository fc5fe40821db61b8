package pgtenant

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Preparing, for the prepared exec modes: a statement is prepared per
// (tenant schema, SQL) on each connection, parsed after the tenant's
// search_path is set; the scope statement once per connection, BEGIN once
// per distinct TxOptions.

// prepare prepares the statements of keys on c in one round trip, after
// what s says, so that each is parsed under the tenant's search_path. It
// never sends BEGIN or ROLLBACK of its own: inside a caller's transaction the
// scope is already set. began reports whether a BEGIN it sent ran: the
// transaction is then open, whatever failed after it, exactly as if pgx had
// begun it and a statement then failed.
func (p *Pool) prepare(ctx context.Context, c *pgx.Conn, st *connState, sd *sender, sc scope, keys []stmtKey, s step, opts pgx.TxOptions) (sds []*pgconn.StatementDescription, began bool, err error) {
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
	// A transaction begun here carries the tenant beyond the server (the
	// carrier's statements) from now on; on the pool's path (withScope)
	// this implicit transaction only parses, and the statement's own block
	// carries it.
	carried := 0
	if s == withBegin {
		sd.car.queuePipeline(pl, sp)
		carried = sd.car.results()
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
	for range carried {
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
