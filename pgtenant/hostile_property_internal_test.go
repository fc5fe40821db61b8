package pgtenant

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

var hostilePrograms = flag.Int("hostile.programs", 60, "random programs TestRandomMixesLeaveNoState runs per exec mode")

// benign is what a careful tenant sends between the attacks: reads, writes
// rolled back, and the transaction-local forms of session state.
var benign = []string{
	"SELECT name FROM items ORDER BY name",
	"UPDATE items SET name = name",
	"SELECT pg_advisory_xact_lock(77)",
	"SELECT count(*) FROM items WHERE name LIKE '%-1'",
	"SELECT set_config('statement_timeout', '9s', true)",
}

// txOnly are benign only inside a transaction (a transaction-local
// temporary table, SET LOCAL).
var txOnly = []string{
	"CREATE TEMP TABLE scratch (a int) ON COMMIT DROP",
	"SET LOCAL statement_timeout = '8s'",
	"SET LOCAL DateStyle = 'SQL, DMY'",
}

// inTx is what a transaction draws its benign statements from.
var inTx = append(benign[:len(benign):len(benign)], txOnly...)

// TestRandomMixesLeaveNoState is the property behind the hostile tests:
// random programs that mix the attacks (some planted as missed by the
// lexer, so that the backstop alone must catch them) with benign
// statements, single or in transactions that fail midway, from two tenants
// taking turns on a pool of one connection, never leave the connection
// dirty for its next holder — after every step the session is as it was,
// the app role's settings are unchanged, and each tenant sees exactly its
// own rows. Each attack is refused with ErrSessionState; each benign
// statement succeeds. -hostile.programs sets the number of programs.
func TestRandomMixesLeaveNoState(t *testing.T) {
	t.Parallel()
	env := setupHostile(t)
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0x7e4a))
	single := []string{"Exec", "Query", "QueryRow", "SendBatch", "OpenDB"}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		p := env.pool(t, mode, CitusOff)
		for prog := 0; prog < *hostilePrograms; prog++ {
			var trace []string
			for step := 0; step < 6; step++ {
				tn := env.a
				if r.IntN(2) == 1 {
					tn = env.b
				}
				ctx := ctxFor(tn)
				if r.IntN(3) > 0 {
					sql, d := env.pick(t, p, r, benign)
					plant(p, sql, d)
					pathName := single[r.IntN(len(single))]
					trace = append(trace, fmt.Sprintf("%s %s (%v): %s", tn.Slug, pathName, d, sql))
					err := paths[pathName](ctx, p, sql)
					switch {
					case d == fullDefense && !errors.Is(err, ErrSessionState):
						t.Errorf("%q: error %v, want ErrSessionState\n%s", sql, err, strings.Join(trace, "\n"))
					case d == benignStmt && err != nil:
						t.Errorf("benign %q: %v\n%s", sql, err, strings.Join(trace, "\n"))
					}
				} else {
					n := 1 + r.IntN(4)
					var stmts []string
					var defs []defense
					var shown []string
					used := map[string]bool{}
					for len(stmts) < n {
						// Each statement once: the same text twice would
						// fail on its own (and share one planted class).
						s, d := env.pick(t, p, r, inTx)
						if used[s] {
							continue
						}
						used[s] = true
						plant(p, s, d)
						stmts = append(stmts, s)
						defs = append(defs, d)
						shown = append(shown, fmt.Sprintf("(%v) %s", d, s))
					}
					trace = append(trace, fmt.Sprintf("%s Tx: %s", tn.Slug, strings.Join(shown, " | ")))
					var failed error
					failedAt := -1
					err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
						for i, s := range stmts {
							if _, err := tx.Exec(ctx, s); err != nil {
								failed, failedAt = err, i
								return err
							}
						}
						return nil
					})
					// Up to the first attack the transaction must go as
					// with pgx; an attack the lexer knows is refused there.
					// After one the backstop alone stands for, only the
					// state afterwards is the property.
					first := len(defs)
					for i, d := range defs {
						if d != benignStmt {
							first = i
							break
						}
					}
					switch {
					case first == len(defs) && err != nil:
						t.Errorf("benign transaction failed: %v\n%s", err, strings.Join(trace, "\n"))
					case first < len(defs) && defs[first] == fullDefense && (failedAt != first || !errors.Is(failed, ErrSessionState)):
						t.Errorf("transaction: statement %d failed with %v, want statement %d with ErrSessionState\n%s", failedAt, failed, first, strings.Join(trace, "\n"))
					case first < len(defs) && failedAt >= 0 && failedAt < first:
						t.Errorf("transaction: benign statement %d failed: %v\n%s", failedAt, failed, strings.Join(trace, "\n"))
					}
				}
				if diff := cmp.Diff(env.baseline, env.state(t, p)); diff != "" {
					t.Fatalf("%v: the next holder's session differs (-before +after):\n%s\nprogram:\n%s", mode, diff, strings.Join(trace, "\n"))
				}
			}
			if diff := cmp.Diff([]string{env.a.Slug + "-1", env.a.Slug + "-2"}, env.names(t, p, env.a)); diff != "" {
				t.Fatalf("tenant A sees (-want +got):\n%s\nprogram:\n%s", diff, strings.Join(trace, "\n"))
			}
			if diff := cmp.Diff([]string{env.b.Slug + "-1", env.b.Slug + "-2"}, env.names(t, p, env.b)); diff != "" {
				t.Fatalf("tenant B sees (-want +got):\n%s\nprogram:\n%s", diff, strings.Join(trace, "\n"))
			}
		}
		p.Close()
	}
}

// benignStmt marks a drawn statement that is no attack.
const benignStmt defense = -1

// pick draws a statement: an attack (half of them to be planted as missed by
// the lexer, so that the backstop alone stands) or one of ok.
func (env *hostileEnv) pick(t *testing.T, p *Pool, r *rand.Rand, ok []string) (string, defense) {
	t.Helper()
	if r.IntN(5) < 2 {
		a := sessionAttacks[r.IntN(len(sessionAttacks))]
		sql := env.expand(t, p, a.sql)
		d := fullDefense
		if r.IntN(2) == 1 {
			d = backstopOnly
		}
		return sql, d
	}
	return ok[r.IntN(len(ok))], benignStmt
}
