package pgtenant_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
)

var (
	diffPrograms = flag.Int("diff.programs", 430, "random programs per variant in TestDifferentialAgainstPgx (7 variants: ≥ 3,000 programs in one run)")
	diffSeed     = flag.Uint64("diff.seed", 0, "run only this seed in TestDifferentialAgainstPgx (0: all)")
)

// querier is what a program's operations run on: a pool or a transaction,
// pgtenant's or plain pgx's.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// diffOp is one operation of a random program.
type diffOp struct {
	Kind string
	SQL  string
	Args []any
}

func (o diffOp) String() string {
	if o.SQL == "" {
		return o.Kind
	}
	return fmt.Sprintf("%s %q %v", o.Kind, o.SQL, o.Args)
}

// diffResult is what an operation returned, reduced to what pgx and
// pgtenant must agree on: command tags, rows, and the class of the error.
type diffResult struct {
	Op   string
	Tag  string
	Rows [][]any
	Err  string
}

// errClass reduces err to its SQLSTATE or the pgx sentinel it matches;
// messages may differ (pgtenant names the tenant), classes must not.
func errClass(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &pgErr):
		return "SQLSTATE " + pgErr.Code
	case errors.Is(err, pgx.ErrTxClosed):
		return "ErrTxClosed"
	case errors.Is(err, pgx.ErrTxCommitRollback):
		return "ErrTxCommitRollback"
	case errors.Is(err, pgx.ErrNoRows):
		return "ErrNoRows"
	}
	return "error"
}

// genProgram makes a random program. Some SQL texts repeat (warm on the
// connection), some are new (cold); transactions nest up to two savepoints.
func genProgram(seed uint64) []diffOp {
	r := rand.New(rand.NewPCG(seed, 0x7e4a))
	variant := func() string {
		if r.IntN(3) == 0 {
			return fmt.Sprintf(" /* new %d-%d */", seed, r.Int())
		}
		return fmt.Sprintf(" /* v%d */", r.IntN(3))
	}
	name := func() string { return string(rune('a' + r.IntN(8))) }
	// param is $1, or, one time in four, $1 through a function the lexer
	// does not know, which makes the statement one the server-side
	// backstop checks (its guard runs after it, in its transaction).
	param := func() string {
		if r.IntN(4) == 0 {
			return "textcat($1::text, '')"
		}
		return "$1"
	}
	var ops []diffOp
	depth := 0
	n := 6 + r.IntN(18)
	for range n {
		switch k := r.IntN(20); {
		case k < 3:
			ops = append(ops, diffOp{Kind: "begin"})
			depth++
		case k < 5 && depth > 0:
			ops = append(ops, diffOp{Kind: "commit"})
			depth--
		case k < 6 && depth > 0:
			ops = append(ops, diffOp{Kind: "rollback"})
			depth--
		case k < 9:
			ops = append(ops, diffOp{Kind: "exec", SQL: "INSERT INTO items (name) VALUES (" + param() + ")" + variant(), Args: []any{name()}})
		case k < 10:
			ops = append(ops, diffOp{Kind: "exec", SQL: "UPDATE items SET name = name || '+' WHERE id % 2 = $1" + variant(), Args: []any{int64(r.IntN(2))}})
		case k < 11:
			ops = append(ops, diffOp{Kind: "exec", SQL: "DELETE FROM items WHERE id = $1" + variant(), Args: []any{int64(1 + r.IntN(4))}})
		case k < 13:
			ops = append(ops, diffOp{Kind: "query", SQL: "SELECT id, name FROM items ORDER BY id" + variant()})
		case k < 14:
			ops = append(ops, diffOp{Kind: "queryrow", SQL: "SELECT count(*), coalesce(max(id), 0) FROM items" + variant()})
		case k < 15:
			ops = append(ops, diffOp{Kind: "queryrow", SQL: "SELECT name FROM items WHERE id = -1" + variant()})
		case k < 16:
			fail := []string{"SELECT 1/0", "SELEC 1", "SELECT nosuchcolumn FROM items", "INSERT INTO items (name) VALUES (NULL)"}[r.IntN(4)]
			ops = append(ops, diffOp{Kind: []string{"exec", "query", "queryrow"}[r.IntN(3)], SQL: fail + variant()})
		case k < 17 && depth > 0:
			ops = append(ops, diffOp{Kind: "exec", SQL: []string{"SAVEPOINT s1", "ROLLBACK TO SAVEPOINT s1", "RELEASE SAVEPOINT s1"}[r.IntN(3)]})
		case k < 18:
			ops = append(ops, diffOp{Kind: "batch", Args: []any{name(), name(), variant(), param()}})
		case k < 19:
			// COPY computes defaults for a buffer of rows before inserting
			// any, so a failing COPY draws identity values that INSERT ...
			// SELECT (pgtenant stages COPY FROM through one) would not:
			// its rows never conflict.
			ops = append(ops, diffOp{Kind: "copy", Args: []any{fmt.Sprintf("c%d", len(ops)), fmt.Sprintf("d%d", len(ops))}})
		default:
			ops = append(ops, diffOp{Kind: "query", SQL: "SELECT name FROM items WHERE name = " + param() + variant(), Args: []any{name()}})
		}
	}
	for ; depth > 0; depth-- {
		ops = append(ops, diffOp{Kind: []string{"commit", "rollback"}[r.IntN(2)]})
	}
	return ops
}

// callModes are what the callModes variants pass to calls as their own exec
// mode, in turn.
var callModes = []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
	pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol}

// runProgram runs ops on pool and returns what each returned. With
// withModes, each Exec, Query and QueryRow passes an exec mode of its own
// (callModes, in turn), on both sides alike.
func runProgram(ctx context.Context, pool querier, ops []diffOp, withModes bool) []diffResult {
	var stack []pgx.Tx
	on := func() querier {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i] != nil {
				return stack[i]
			}
		}
		return pool
	}
	out := make([]diffResult, 0, len(ops))
	for i, op := range ops {
		res := diffResult{Op: op.String()}
		if withModes && (op.Kind == "exec" || op.Kind == "query" || op.Kind == "queryrow") {
			op.Args = append([]any{callModes[i%len(callModes)]}, op.Args...)
		}
		var err error
		switch op.Kind {
		case "begin":
			var tx pgx.Tx
			tx, err = on().Begin(ctx)
			// A failed Begin pushes nil: the matching end is then skipped.
			stack = append(stack, tx)
		case "commit", "rollback":
			tx := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if tx == nil {
				res.Err = "no transaction"
				out = append(out, res)
				continue
			}
			if op.Kind == "commit" {
				err = tx.Commit(ctx)
			} else {
				err = tx.Rollback(ctx)
			}
		case "exec":
			var ct pgconn.CommandTag
			ct, err = on().Exec(ctx, op.SQL, op.Args...)
			res.Tag = ct.String()
		case "query":
			var rows pgx.Rows
			rows, err = on().Query(ctx, op.SQL, op.Args...)
			if err == nil {
				res.Rows, err = collect(rows)
				res.Tag = rows.CommandTag().String()
			}
		case "queryrow":
			vals := []any{new(any), new(any)}
			if strings.Contains(op.SQL, "SELECT name") {
				vals = vals[:1]
			}
			if err = on().QueryRow(ctx, op.SQL, op.Args...).Scan(vals...); err == nil {
				row := make([]any, len(vals))
				for i, v := range vals {
					row[i] = *(v.(*any))
				}
				res.Rows = [][]any{row}
			}
		case "batch":
			b := &pgx.Batch{}
			b.Queue("INSERT INTO items (name) VALUES ("+op.Args[3].(string)+")"+op.Args[2].(string), op.Args[0])
			b.Queue("INSERT INTO items (name) VALUES ($1)"+op.Args[2].(string), op.Args[1])
			b.Queue("SELECT id, name FROM items ORDER BY id" + op.Args[2].(string))
			br := on().SendBatch(ctx, b)
			var errs []string
			for range 2 {
				ct, err := br.Exec()
				errs = append(errs, ct.String()+errClass(err))
			}
			rows, qerr := br.Query()
			if qerr == nil {
				res.Rows, qerr = collect(rows)
			}
			errs = append(errs, errClass(qerr))
			err = br.Close()
			res.Tag = strings.Join(errs, ",")
		case "copy":
			var n int64
			n, err = on().CopyFrom(ctx, pgx.Identifier{"items"}, []string{"name"}, pgx.CopyFromRows([][]any{{op.Args[0]}, {op.Args[1]}}))
			res.Tag = fmt.Sprint(n)
		}
		res.Err = errClass(err)
		out = append(out, res)
	}
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i] != nil {
			_ = stack[i].Rollback(ctx)
		}
	}
	return out
}

func collect(rows pgx.Rows) ([][]any, error) {
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// createItems creates schema.items owned by the owner role and granted to
// the app role: a tenant's table (with RLS pinned to tenantID) when tenantID
// is set, a plain one for the oracle otherwise.
func createItems(t testing.TB, pg *testenv.PG, schema, tenantID string) {
	t.Helper()
	s := pgx.Identifier{schema}.Sanitize()
	app := pgx.Identifier{pg.AppRole}.Sanitize()
	def := "'oracle'"
	if tenantID != "" {
		def = "current_setting('app.tenant_id')"
	}
	stmts := []string{
		"CREATE SCHEMA " + s,
		"CREATE TABLE " + s + ".items (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL DEFAULT " + def + ", name text NOT NULL UNIQUE)",
		"GRANT USAGE ON SCHEMA " + s + " TO " + app,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON " + s + ".items TO " + app,
	}
	if tenantID != "" {
		policy := "tenant_id = nullif(current_setting('app.tenant_id', true), '') AND tenant_id = '" + tenantID + "'"
		stmts = append(stmts,
			"ALTER TABLE "+s+".items ENABLE ROW LEVEL SECURITY",
			"ALTER TABLE "+s+".items FORCE ROW LEVEL SECURITY",
			"CREATE POLICY tenant_isolation ON "+s+".items USING ("+policy+") WITH CHECK ("+policy+")")
	}
	owner := pg.OwnerPool(t)
	for _, q := range stmts {
		if _, err := owner.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestDifferentialAgainstPgx runs random programs through pgtenant.Pool for a
// tenant and through a plain pgxpool.Pool on an identical single-tenant
// schema, and compares every result, error class and the final table.
// Pools are new every few programs, so connections start cold and SQL texts
// are met both new and already prepared.
func TestDifferentialAgainstPgx(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tn := testenv.Tenant(t, "diff")
	oracleSchema := "oracle_" + strings.ReplaceAll(testenv.UniqueID("d"), "-", "_")
	createItems(t, pg, pgtenant.SchemaName(tn), tn.ID)
	createItems(t, pg, oracleSchema, "")
	admin := pg.AdminPool(t)
	tables := map[string]string{
		"pgtenant": pgx.Identifier{pgtenant.SchemaName(tn), "items"}.Sanitize(),
		"pgx":      pgx.Identifier{oracleSchema, "items"}.Sanitize(),
	}
	ctx := ctxFor(tn)
	bg := context.Background()

	// The citus variants run Citus mode's explicit blocks (see
	// pgtenant.CitusMode) on plain PostgreSQL, where they must change
	// nothing a program can see; the callmodes variants pass each statement
	// an exec mode of its own, as pgx allows.
	for _, variant := range []struct {
		maxConns  int32
		mode      pgx.QueryExecMode
		citus     bool
		callModes bool
	}{{1, pgx.QueryExecModeCacheStatement, false, false}, {4, pgx.QueryExecModeCacheStatement, false, false}, {1, pgx.QueryExecModeExec, false, false},
		{1, pgx.QueryExecModeCacheStatement, true, false}, {1, pgx.QueryExecModeExec, true, false},
		{1, pgx.QueryExecModeCacheStatement, false, true}, {1, pgx.QueryExecModeExec, false, true}} {
		maxConns, mode := variant.maxConns, variant.mode
		name := fmt.Sprintf("MaxConns=%d/mode=%v", maxConns, mode)
		if variant.citus {
			name += "/citus"
		}
		if variant.callModes {
			name += "/callmodes"
		}
		t.Run(name, func(t *testing.T) {
			var tp *pgtenant.Pool
			var op *pgxpool.Pool
			fresh := func() {
				if tp != nil {
					tp.Close()
					op.Close()
				}
				tp = newPool(t, pg, func(c *pgtenant.Config) {
					c.PoolConfig.MaxConns = maxConns
					c.PoolConfig.ConnConfig.DefaultQueryExecMode = mode
					if variant.citus {
						c.Citus = pgtenant.CitusOn
					}
				})
				cfg := pg.AppConfig(t)
				cfg.MaxConns = maxConns
				cfg.ConnConfig.DefaultQueryExecMode = mode
				cfg.ConnConfig.RuntimeParams["search_path"] = oracleSchema
				var err error
				if op, err = pgxpool.NewWithConfig(bg, cfg); err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				if op != nil { // nil when the first fresh() failed
					op.Close()
				}
			}()
			for i := range *diffPrograms {
				seed := uint64(maxConns)*1_000_000 + uint64(mode)*100_000 + uint64(i) + 1
				if *diffSeed != 0 && seed != *diffSeed {
					continue
				}
				if i%10 == 0 || *diffSeed != 0 {
					fresh()
				}
				for _, table := range tables {
					if _, err := admin.Exec(bg, "TRUNCATE "+table+" RESTART IDENTITY"); err != nil {
						t.Fatal(err)
					}
				}
				ops := genProgram(seed)
				got := runProgram(ctx, tp, ops, variant.callModes)
				wantRes := runProgram(bg, op, ops, variant.callModes)
				final := map[string][][]any{}
				for impl, table := range tables {
					rows, _ := admin.Query(bg, "SELECT id, name FROM "+table+" ORDER BY id")
					final[impl], _ = collect(rows)
				}
				diff := cmp.Diff(wantRes, got)
				if d := cmp.Diff(final["pgx"], final["pgtenant"]); d != "" {
					diff += "\nfinal table (-pgx +pgtenant):\n" + d
				}
				held := tp.Stat().AcquiredConns()
				for wait := 0; held != 0 && wait < 20; wait++ { // destroyed connections close asynchronously
					time.Sleep(10 * time.Millisecond)
					held = tp.Stat().AcquiredConns()
				}
				if held != 0 {
					diff += fmt.Sprintf("\npgtenant still holds %d connections", held)
				}
				if diff != "" {
					var prog strings.Builder
					for _, o := range ops {
						fmt.Fprintf(&prog, "\t%s\n", o)
					}
					t.Fatalf("seed %d (rerun: -run TestDifferentialAgainstPgx -diff.seed %d) diverges from pgx.\nprogram:\n%s(-pgx +pgtenant):\n%s",
						seed, seed, prog.String(), diff)
				}
			}
		})
	}
}
