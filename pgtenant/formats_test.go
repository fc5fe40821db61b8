package pgtenant_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
)

// TestResultFormatsMatchPgx: pgx.QueryResultFormats and
// QueryResultFormatsByOID (what pgx's database/sql driver passes) give the
// columns in the formats, and the bytes, that plain pgxpool gives for the
// same query, through Pool, Tx and Conn, in every exec mode — and, where
// the pool prepares statements, on the statement path itself: no BEGIN is
// traced for them (they once went through pgx in a transaction of their
// own, three round trips).
func TestResultFormatsMatchPgx(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := createTenants(t, pg, "formats", 1, 2)[0]
	const sql = "SELECT id::int4, name, '1 day'::interval, ARRAY[id, 2]::int4[], 1.5::numeric FROM items WHERE id = $1"
	options := map[string]any{
		"formats": pgx.QueryResultFormats{0, 1, 0, 1, 0},
		"by OID": pgx.QueryResultFormatsByOID{pgtype.Int4OID: 1, pgtype.TextOID: 0, pgtype.IntervalOID: 0,
			pgtype.Int4ArrayOID: 0, pgtype.NumericOID: 1},
	}
	type result struct {
		Formats []int16
		Values  [][]byte
	}
	read := func(t *testing.T, q func() (pgx.Rows, error)) result {
		t.Helper()
		rows, err := q()
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var r result
		for rows.Next() {
			for _, fd := range rows.FieldDescriptions() {
				r.Formats = append(r.Formats, fd.Format)
			}
			for _, v := range rows.RawValues() {
				r.Values = append(r.Values, append([]byte(nil), v...))
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			rec := &recorder{}
			p := newPool(t, pg, func(c *pgtenant.Config) {
				c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode
				c.PoolConfig.ConnConfig.Tracer = rec
			})
			raw := tenantSessionPool(t, pg, tn, mode, nil)
			ctx := ctxFor(tn)
			for name, opt := range options {
				want := read(t, func() (pgx.Rows, error) { return raw.Query(context.Background(), sql, opt, 2) })
				if len(want.Values) != 5 {
					t.Fatalf("%s: pgx read %d values", name, len(want.Values))
				}
				check := func(path string, got result) {
					t.Helper()
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("%s, %s (-pgx +pgtenant):\n%s", name, path, diff)
					}
				}
				check("Pool.Query", read(t, func() (pgx.Rows, error) { return p.Query(ctx, sql, opt, 2) }))
				var id int32
				var text string
				if err := p.QueryRow(ctx, sql, opt, 2).Scan(&id, &text, nil, nil, nil); err != nil || id != 2 || text != tn.Slug+"-2" {
					t.Errorf("%s, Pool.QueryRow: %d %q %v", name, id, text, err)
				}
				err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
					check("Tx.Query", read(t, func() (pgx.Rows, error) { return tx.Query(ctx, sql, opt, 2) }))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				c, err := p.Acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				check("Conn.Query", read(t, func() (pgx.Rows, error) { return c.Query(ctx, sql, opt, 2) }))
				c.Release()
			}
			if mode == pgx.QueryExecModeCacheStatement || mode == pgx.QueryExecModeExec {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				begins := 0
				for _, q := range rec.queries { // "<slug>|begin|0 args"
					if strings.Contains(strings.ToLower(q), "|begin") {
						begins++
					}
				}
				for _, q := range rec.batch { // "begin|0 args|BEGIN", a BEGIN pgx sent in a batch
					if strings.HasPrefix(strings.ToLower(q), "begin") {
						begins++
					}
				}
				// One BEGIN per BeginFunc above (two options), none for the
				// Pool calls.
				if begins != len(options) {
					t.Errorf("%d BEGINs traced, want %d (one per BeginFunc): %q", begins, len(options), rec.queries)
				}
			}
		})
	}
}
