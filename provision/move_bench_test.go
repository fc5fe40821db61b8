package provision_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
)

// BenchmarkMove moves a tenant of 100k notes between the registry's
// database and a silo on the second server, back and forth, while a writer
// adds a note every millisecond through the Router (so the sync has tables
// to copy again), and compares it with pg_dump | pg_restore of the same
// schema between the same two servers, in the same run. Metrics: pause-ms
// is MoveResult.Pause (the tenant's writes frozen), rows the rows copied.
// BENCHMARKS.md has the figures and the command.
func BenchmarkMove(b *testing.B) {
	const rows = 100_000
	w := newWorld(b)
	ctx := context.Background()
	tn := w.create(b, "bm", "default")
	seed(b, w.router, tn, 1)
	schema := pgx.Identifier{pgtenant.SchemaName(tn)}.Sanitize()
	if _, err := w.owners["default"].Exec(ctx, fmt.Sprintf(`SELECT set_config('app.tenant_id', '%s', false);
		INSERT INTO %s.notes (tenant_id, project_id, body) SELECT '%s', (SELECT min(id) FROM %s.projects), repeat('x', 40) || g FROM generate_series(1, %d) g`,
		tn.ID, schema, tn.ID, schema, rows), pgx.QueryExecModeSimpleProtocol); err != nil {
		b.Fatal(err)
	}
	b.Run("impl=move", func(b *testing.B) {
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			for !stop.Load() {
				_, _ = w.router.Exec(ctxFor(tn), "INSERT INTO notes (project_id, body) SELECT min(id), 'live' FROM projects")
				time.Sleep(time.Millisecond)
			}
		}()
		var pause time.Duration
		var moved int64
		to := []string{"silo", "default"}
		for i := 0; b.Loop(); i++ {
			res, err := w.reg.Move(ctx, tn.Slug, to[i%2], provision.MoveOptions{Progress: func(e provision.MoveEvent) {
				if os.Getenv("MOVE_TRACE") != "" {
					fmt.Fprintf(os.Stderr, "%v %s %s %d\n", e.Elapsed.Round(time.Millisecond), e.Step, e.Table, e.Rows)
				}
			}})
			if err != nil {
				b.Fatal(err)
			}
			pause += res.Pause
			moved += res.Rows
		}
		stop.Store(true)
		<-done
		b.ReportMetric(float64(pause.Milliseconds())/float64(b.N), "pause-ms/op")
		b.ReportMetric(float64(moved)/float64(b.N), "rows/op")
		// Leave it where it started, for the baseline.
		if _, err := w.reg.Move(ctx, tn.Slug, "default", provision.MoveOptions{}); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("impl=pg_dump|pg_restore", func(b *testing.B) {
		src, dst := w.owners["default"].Config().ConnString(), w.owners["silo"].Config().ConnString()
		for b.Loop() {
			// The owner is bound by the forced row level security too: pg_dump
			// reads in the tenant's scope.
			cmd := exec.Command("sh", "-c", `PGOPTIONS="-c app.tenant_id=$TENANT" pg_dump -Fc --enable-row-security --no-owner --no-acl -n "$SCHEMA" -d "$SRC" | pg_restore --no-owner --no-acl -d "$DST"`)
			cmd.Env = append(cmd.Environ(), "SCHEMA="+pgtenant.SchemaName(tn), "SRC="+src, "DST="+dst, "TENANT="+tn.ID)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("pg_dump | pg_restore: %v\n%s", err, out)
			}
			b.StopTimer()
			if _, err := w.owners["silo"].Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}
