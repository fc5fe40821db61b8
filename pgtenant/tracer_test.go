package pgtenant_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// recorder is a pgx.QueryTracer and PrepareTracer that records what it sees.
type recorder struct {
	mu       sync.Mutex
	queries  []string // "<tenant slug>|<sql>|<n> args" at the start
	ends     int
	prepared []string
	batch    []string // "start", the SQL of each query, "end"
}

func (r *recorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batch = append(r.batch, "start")
	return context.WithValue(ctx, spanKey{}, -1)
}

func (r *recorder) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Value(spanKey{}) == -1 {
		r.batch = append(r.batch, fmt.Sprintf("%s|%d args|%s", d.SQL, len(d.Args), d.CommandTag))
	}
}

func (r *recorder) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Value(spanKey{}) == -1 {
		r.batch = append(r.batch, fmt.Sprintf("end %v", d.Err))
	}
}

type spanKey struct{}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	slug := ""
	if t, ok := tenant.FromContext(ctx); ok {
		slug = t.Slug
	}
	r.queries = append(r.queries, fmt.Sprintf("%s|%s|%d args", slug, d.SQL, len(d.Args)))
	return context.WithValue(ctx, spanKey{}, len(r.queries))
}

func (r *recorder) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Value(spanKey{}) != nil {
		r.ends++
	}
}

func (r *recorder) TracePrepareStart(ctx context.Context, _ *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prepared = append(r.prepared, d.SQL)
	return ctx
}

func (r *recorder) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// TestTracersSeeTheCallersSQL: a tracer on the pool's ConnConfig sees every
// statement of the prepared path with the caller's SQL (never the pool's
// statement names), with the tenant in its context, and each start is ended
// with the context it returned.
func TestTracersSeeTheCallersSQL(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "trace", 1, 2)[0]
	rec := &recorder{}
	p := newPool(t, pg, func(c *pgtenant.Config) { c.PoolConfig.ConnConfig.Tracer = rec })
	ctx := ctxFor(tn)
	const sel = "SELECT name FROM items WHERE id = $1"
	if _, err := p.Exec(ctx, "UPDATE items SET name = name WHERE id = $1", 1); err != nil {
		t.Fatal(err)
	}
	names(t, p, ctx, "SELECT name FROM items ORDER BY id")
	var s string
	if err := p.QueryRow(ctx, sel, 1).Scan(&s); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE items SET name = name WHERE id = $1", 2); err != nil {
			return err
		}
		names(t, tx, ctx, "SELECT name FROM items ORDER BY id")
		return tx.QueryRow(ctx, sel, 2).Scan(&s)
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue("UPDATE items SET name = name WHERE id = $1", 1)
	b.Queue("SELECT name FROM items ORDER BY id")
	if err := p.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	conn, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, sel, 1).Scan(&s); err != nil {
		t.Fatal(err)
	}
	conn.Release()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var want []string
	for i := range 2 { // the pool, then a transaction, whose BEGIN and COMMIT pgx traces too
		if i == 1 {
			want = append(want, tn.Slug+"|begin|0 args")
		}
		want = append(want,
			tn.Slug+"|UPDATE items SET name = name WHERE id = $1|1 args",
			tn.Slug+"|SELECT name FROM items ORDER BY id|0 args",
			tn.Slug+"|"+sel+"|1 args")
		if i == 1 {
			want = append(want, tn.Slug+"|commit|0 args")
		}
	}
	want = append(want, tn.Slug+"|"+sel+"|1 args") // Acquire
	// The pool's own statements that go through pgx (the role check, the
	// session reset and settings of Acquire) are traced too: keep the
	// caller's.
	var got []string
	for _, q := range rec.queries {
		if !strings.Contains(q, "pg_roles") && !strings.Contains(q, "CLOSE ALL") && !strings.Contains(q, "set_config(") {
			got = append(got, q)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("traced statements (-want +got):\n%s", diff)
	}
	if rec.ends != len(rec.queries) {
		t.Errorf("%d ends with the start's context for %d starts", rec.ends, len(rec.queries))
	}
	wantBatch := []string{"start", "UPDATE items SET name = name WHERE id = $1|1 args|UPDATE 1", "SELECT name FROM items ORDER BY id|0 args|SELECT 2", "end <nil>"}
	if diff := cmp.Diff(wantBatch, rec.batch); diff != "" {
		t.Errorf("traced batch (-want +got):\n%s", diff)
	}
	if len(rec.prepared) == 0 {
		t.Error("no prepare was traced")
	}
	for _, sql := range rec.prepared {
		if strings.HasPrefix(sql, "tenancy_") {
			t.Errorf("prepare traced the pool's statement name %q", sql)
		}
	}
}

// TestTracersMatchPgx runs one program through pgtenant and through a plain
// pgxpool (the oracle, its search_path and setting fixed at connect) with a
// recording tracer on each: the statements traced, transaction control
// included (begin, savepoints, commit, rollback), are the same, in the same
// order, each start ended.
func TestTracersMatchPgx(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "tracepgx", 1, 3)[0]
	program := func(ctx context.Context, db interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
		Query(context.Context, string, ...any) (pgx.Rows, error)
		QueryRow(context.Context, string, ...any) pgx.Row
		Begin(context.Context) (pgx.Tx, error)
		SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
	}) {
		var s string
		if _, err := db.Exec(ctx, "UPDATE items SET name = name WHERE id = $1", 1); err != nil {
			t.Fatal(err)
		}
		names(t, db, ctx, "SELECT name FROM items ORDER BY id")
		if err := db.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 2).Scan(&s); err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue("UPDATE items SET name = name WHERE id = $1", 1)
		b.Queue("SELECT name FROM items ORDER BY id")
		if err := db.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, "SELECT name FROM items WHERE id = $1", 3).Scan(&s); err != nil {
				return err
			}
			return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				_, err := sp.Exec(ctx, "UPDATE items SET name = name WHERE id = $1", 3)
				return err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "UPDATE items SET name = 'gone' WHERE id = $1", 1); err != nil {
			t.Fatal(err)
		}
		sp, err := tx.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sp.Exec(ctx, "SELECT 1/0"); err == nil {
			t.Fatal("1/0 succeeded")
		}
		if err := sp.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
	traced := func(rec *recorder) []string {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		var out []string
		for _, q := range rec.queries {
			_, rest, _ := strings.Cut(q, "|")
			if !strings.Contains(rest, "pg_roles") && !strings.Contains(rest, "CLOSE ALL") && !strings.Contains(rest, "set_config(") {
				out = append(out, rest)
			}
		}
		if rec.ends != len(rec.queries) {
			t.Errorf("%d ends with the start's context for %d starts", rec.ends, len(rec.queries))
		}
		return append(out, rec.batch...)
	}

	// Every mode but the simple protocol, whose statements go through pgx's
	// SendBatch and are traced as batches (the scope statement, then the
	// caller's).
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec} {
		t.Run(mode.String(), func(t *testing.T) { tracedLikePgx(t, pg, tn, mode, pgtenant.CitusOff, program, traced) })
	}
	// Citus mode's blocks and SET LOCALs are the pool's own, like the scope
	// statement: a tracer sees what it sees without them.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec} {
		t.Run(mode.String()+"/citus", func(t *testing.T) { tracedLikePgx(t, pg, tn, mode, pgtenant.CitusOn, program, traced) })
	}
}

func tracedLikePgx(t *testing.T, pg *testenv.PG, tn tenant.Tenant, mode pgx.QueryExecMode, citus pgtenant.CitusMode, program func(context.Context, interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
	Begin(context.Context) (pgx.Tx, error)
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}), traced func(*recorder) []string) {
	ours := &recorder{}
	p := newPool(t, pg, func(c *pgtenant.Config) {
		c.PoolConfig.ConnConfig.Tracer = ours
		c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode
		c.Citus = citus
	})
	program(ctxFor(tn), p)

	oracle := &recorder{}
	raw := tenantSessionPool(t, pg, tn, mode, func(c *pgxpool.Config) { c.ConnConfig.Tracer = oracle })
	program(context.Background(), raw)

	if diff := cmp.Diff(traced(oracle), traced(ours)); diff != "" {
		t.Errorf("traced statements (-pgx +pgtenant):\n%s", diff)
	}
}
