package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// Worker takes jobs from one shared Redis stream whose entries carry the
// tenant ID, and runs each job as its tenant: the tenant is looked up and
// put into a context made fresh for that job, so a job never runs under the
// previous job's tenant, and a job of an unknown or suspended tenant never
// runs at all.
type Worker struct {
	Lookup   tenant.Lookup
	Pool     *pgtenant.Pool
	Redis    *redistenant.Client // results, in the tenant's namespace
	Stream   string              // the shared stream, outside every tenant's namespace
	Group    string
	Consumer string
	Log      *slog.Logger
}

// Result is what a "count" job stores for its tenant under "job:<id>".
type Result struct {
	JobID     string   `json:"job_id"`
	Events    int64    `json:"events"`
	TenantIDs []string `json:"tenant_ids"` // the tenant_id of every row the job saw
}

// Enqueue adds a job for tenantID to the shared stream and returns its ID.
func (w *Worker) Enqueue(ctx context.Context, tenantID, kind string) (string, error) {
	raw := w.Redis.Unwrap()
	return raw.Do(ctx, raw.B().Xadd().Key(w.Stream).Id("*").FieldValue().FieldValue("tenant", tenantID).FieldValue("kind", kind).Build()).ToString()
}

// Setup creates the consumer group if it does not exist.
func (w *Worker) Setup(ctx context.Context) error {
	raw := w.Redis.Unwrap()
	err := raw.Do(ctx, raw.B().XgroupCreate().Key(w.Stream).Group(w.Group).Id("0").Mkstream().Build()).Error()
	if err != nil && !rueidis.IsRedisBusyGroup(err) {
		return err
	}
	return nil
}

// RunOnce reads up to count jobs, waiting up to block for the first, runs
// them and acknowledges them. It returns how many it handled.
func (w *Worker) RunOnce(ctx context.Context, count int64, block time.Duration) (int, error) {
	raw := w.Redis.Unwrap()
	streams, err := raw.Do(ctx, raw.B().Xreadgroup().Group(w.Group, w.Consumer).Count(count).Block(block.Milliseconds()).
		Streams().Key(w.Stream).Id(">").Build()).AsXRead()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, entry := range streams[w.Stream] {
		// A context of its own per job: nothing of the previous job's
		// tenant can carry over.
		jobCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		w.handle(jobCtx, entry)
		cancel()
		if err := raw.Do(ctx, raw.B().Xack().Key(w.Stream).Group(w.Group).Id(entry.ID).Build()).Error(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (w *Worker) handle(ctx context.Context, entry rueidis.XRangeEntry) {
	t, err := w.Lookup.LookupTenant(ctx, entry.FieldValues["tenant"])
	if err != nil {
		// Unknown, suspended or not resolvable now: the job is dropped
		// (a real service would dead-letter it), never run without a tenant.
		w.Log.WarnContext(ctx, "job skipped", "job", entry.ID, "tenant", entry.FieldValues["tenant"], "error", err)
		return
	}
	ctx = tenant.NewContext(ctx, t)
	if err := w.run(ctx, entry.ID, entry.FieldValues["kind"]); err != nil {
		w.Log.ErrorContext(ctx, "job failed", "job", entry.ID, "error", err)
		return
	}
	w.Log.InfoContext(ctx, "job done", "job", entry.ID)
}

var errUnknownKind = errors.New("unknown job kind")

func (w *Worker) run(ctx context.Context, jobID, kind string) error {
	switch kind {
	case "record":
		_, err := w.Pool.Exec(ctx, "INSERT INTO events (body) VALUES ($1)", "job "+jobID)
		return err
	case "count":
		res := Result{JobID: jobID}
		rows, _ := w.Pool.Query(ctx, "SELECT DISTINCT tenant_id FROM events")
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			res.TenantIDs = append(res.TenantIDs, id)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := w.Pool.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&res.Events); err != nil {
			return err
		}
		body, _ := json.Marshal(res)
		return w.Redis.Do(ctx, w.Redis.B().Set().Key("job:"+jobID).Value(string(body)).Ex(time.Hour).Build()).Error()
	}
	return fmt.Errorf("%w: %q", errUnknownKind, kind)
}
