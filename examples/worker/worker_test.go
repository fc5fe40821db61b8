package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestJobsRunAsTheirTenant interleaves jobs of four tenants on one worker and
// one connection, and checks that every job saw exactly its tenant's rows; a
// job for an unknown or a suspended tenant does not run.
func TestJobsRunAsTheirTenant(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	owner := pg.OwnerPool(t)
	rc := testenv.RedisClient(t)
	redis := redistenant.New(rc, redistenant.Config{})
	reg, err := provision.New(ctx, provision.Config{Owner: owner, AppRole: pg.AppRole, Builder: eventsDDL, Purger: redis, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(pg.AppURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1 // every job on the same connection, one after another
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var tenants []tenant.Tenant
	for range 4 {
		rec, err := reg.Create(ctx, provision.Spec{Slug: testenv.NewTenant("job").Slug})
		if err != nil {
			t.Fatal(err)
		}
		tenants = append(tenants, rec.Tenant())
		t.Cleanup(func() { _ = reg.Delete(context.Background(), rec.Slug) })
	}
	suspended := tenants[3]
	if err := reg.Suspend(ctx, suspended.Slug); err != nil {
		t.Fatal(err)
	}
	stream := "jobs:" + testenv.UniqueID("test")
	t.Cleanup(func() { rc.Do(context.Background(), rc.B().Del().Key(stream).Build()) })
	w := &Worker{Lookup: reg, Pool: pool, Redis: redis, Stream: stream, Group: "g", Consumer: "c1", Log: slog.New(slog.DiscardHandler)}
	if err := w.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	type job struct {
		tenant tenant.Tenant
		id     string
		events int64 // rows of its tenant when it runs
	}
	var counts []job
	recorded := map[string]int64{}
	for round := range 5 {
		for _, tn := range tenants {
			if _, err := w.Enqueue(ctx, tn.ID, "record"); err != nil {
				t.Fatal(err)
			}
			if tn != suspended {
				recorded[tn.ID]++
			}
			id, err := w.Enqueue(ctx, tn.ID, "count")
			if err != nil {
				t.Fatal(err)
			}
			counts = append(counts, job{tenant: tn, id: id, events: int64(round + 1)})
		}
	}
	if _, err := w.Enqueue(ctx, "no-such-tenant", "record"); err != nil {
		t.Fatal(err)
	}
	handled := 0
	for {
		n, err := w.RunOnce(ctx, 7, 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		handled += n
	}
	if handled != len(tenants)*5*2+1 {
		t.Errorf("handled %d jobs", handled)
	}
	for _, j := range counts {
		ctx := tenant.NewContext(ctx, j.tenant)
		body, err := redis.Do(ctx, redis.B().Get().Key("job:"+j.id).Build()).ToString()
		if j.tenant == suspended {
			if err == nil {
				t.Errorf("a job of the suspended tenant ran: %s", body)
			}
			continue
		}
		if err != nil {
			t.Fatalf("result of %s: %v", j.id, err)
		}
		var res Result
		if err := json.Unmarshal([]byte(body), &res); err != nil {
			t.Fatal(err)
		}
		if res.Events != j.events || len(res.TenantIDs) != 1 || res.TenantIDs[0] != j.tenant.ID {
			t.Errorf("job %s of %s saw %d events of %v; want %d of only its own", j.id, j.tenant.Slug, res.Events, res.TenantIDs, j.events)
		}
	}
	// And the rows: each tenant holds exactly what its record jobs wrote.
	for _, tn := range tenants[:3] {
		var n int64
		if err := pool.QueryRow(tenant.NewContext(ctx, tn), "SELECT count(*) FROM events").Scan(&n); err != nil || n != recorded[tn.ID] {
			t.Errorf("%s has %d events (%v), want %d", tn.Slug, n, err, recorded[tn.ID])
		}
	}
}
