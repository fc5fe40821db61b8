package pgtenant

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SendBatch sends every query of b in the tenant's scope, the scope
// statement first, all in one round trip and one implicit transaction. The
// connection returns to the pool when the results are closed. A batch that
// begins a transaction (pgx.Batch.BeginTx) is not supported here: use
// [Pool.BeginTx] and send the batch on the transaction.
func (p *Pool) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	sc, err := p.require(ctx)
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	mapped := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+1)}
	p.queueScope(mapped, sc)
	for i, q := range b.QueuedQueries {
		sql, args, opts, err := splitArgs(ctx, q.SQL, q.Arguments)
		if err == nil && len(opts) > 0 {
			err = fmt.Errorf("pgtenant: query options other than pgx.QueryRewriter are not supported in a batch")
		}
		if err == nil && p.prepared {
			sql, err = p.statement(ctx, c.Conn(), sc, sql)
		}
		if err != nil {
			c.Release()
			return pgx.FailedBatchResults(b, fmt.Errorf("pgtenant: batch query %d: %w", i, err))
		}
		mapped.QueuedQueries = append(mapped.QueuedQueries, &pgx.QueuedQuery{SQL: sql, Arguments: args, Fn: q.Fn})
	}
	br := c.Conn().SendBatch(ctx, mapped)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		err = scopeFailed(ctx, c.Conn(), sc, err)
		c.Release()
		return pgx.FailedBatchResults(b, err)
	}
	return &batchResults{BatchResults: br, conn: c}
}

// batchResults returns the connection to the pool once closed.
type batchResults struct {
	pgx.BatchResults
	conn   *pgxpool.Conn
	err    error
	closed bool
}

func (br *batchResults) Close() error {
	if br.closed {
		return br.err
	}
	br.closed = true
	br.err = br.BatchResults.Close()
	br.conn.Release()
	return br.err
}
