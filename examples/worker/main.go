// Command worker is a tenant-aware background worker built on Tenancy: it
// takes jobs from a shared Redis stream whose entries carry the tenant ID and
// runs each one as its tenant, through pgtenant and redistenant.
//
//	go run ./examples/worker
//
// It provisions two demo tenants, enqueues interleaved jobs for both, runs
// them, and prints what each "count" job saw: only its own tenant's rows.
// Configuration as for examples/saas: DATABASE_URL and APP_DATABASE_URL, or
// PostgreSQL and Redis on localhost.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// eventsDDL is the demo tenants' schema.
var eventsDDL = provision.DDL(`CREATE TABLE events (id bigserial PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL)`)

func main() {
	log := slog.New(tenant.NewLogHandler(slog.NewTextHandler(os.Stderr, nil)))
	if err := run(log); err != nil {
		log.Error("worker stopped", "error", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ownerURL, appURL := os.Getenv("DATABASE_URL"), os.Getenv("APP_DATABASE_URL")
	if ownerURL == "" || appURL == "" {
		svc, err := testenv.FindPostgreSQL(ctx)
		if err != nil {
			return fmt.Errorf("%v\nset DATABASE_URL and APP_DATABASE_URL, or run PostgreSQL on 127.0.0.1:5432", err)
		}
		defer svc.Close()
		if ownerURL, appURL, err = testenv.ExampleDatabase(ctx, svc.URL, "tenancy_worker"); err != nil {
			return err
		}
	}
	redisAddr := os.Getenv("REDIS_ADDR")
	if redisAddr == "" {
		svc, err := testenv.FindRedis(ctx)
		if err != nil {
			return fmt.Errorf("%v\nset REDIS_ADDR, or run Redis on 127.0.0.1:6379", err)
		}
		defer svc.Close()
		redisAddr = svc.URL
	}
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}})
	if err != nil {
		return err
	}
	defer rc.Close()
	owner, err := pgxpool.New(ctx, ownerURL)
	if err != nil {
		return err
	}
	defer owner.Close()
	appCfg, err := pgxpool.ParseConfig(appURL)
	if err != nil {
		return err
	}
	redis := redistenant.New(rc, redistenant.Config{})
	reg, err := provision.New(ctx, provision.Config{Owner: owner, AppRole: appCfg.ConnConfig.User, Builder: eventsDDL, Purger: redis, Logger: log})
	if err != nil {
		return err
	}
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: appCfg})
	if err != nil {
		return err
	}
	defer pool.Close()

	var demo []tenant.Tenant
	for _, slug := range []string{"north", "south"} {
		rec, err := reg.Get(ctx, slug)
		if err != nil {
			if rec, err = reg.Create(ctx, provision.Spec{Slug: slug}); err != nil {
				return err
			}
		}
		demo = append(demo, rec.Tenant())
	}
	w := &Worker{Lookup: tenant.NewCache(reg, tenant.CacheConfig{}), Pool: pool, Redis: redis,
		Stream: "jobs", Group: "workers", Consumer: "worker-1", Log: log}
	if err := w.Setup(ctx); err != nil {
		return err
	}
	var counts []string
	for i := range 6 {
		t := demo[i%2]
		if _, err := w.Enqueue(ctx, t.ID, "record"); err != nil {
			return err
		}
		id, err := w.Enqueue(ctx, t.ID, "count")
		if err != nil {
			return err
		}
		counts = append(counts, t.ID+" "+id)
	}
	for ctx.Err() == nil {
		n, err := w.RunOnce(ctx, 10, 500*time.Millisecond)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	for _, c := range counts {
		var tenantID, jobID string
		fmt.Sscan(c, &tenantID, &jobID)
		t := demo[0]
		if demo[1].ID == tenantID {
			t = demo[1]
		}
		body, err := redis.Do(tenant.NewContext(ctx, t), redis.B().Get().Key("job:"+jobID).Build()).ToString()
		if err != nil {
			return err
		}
		var res Result
		_ = json.Unmarshal([]byte(body), &res)
		fmt.Printf("job %s of %s saw %d events of tenants %v\n", jobID, t.Slug, res.Events, res.TenantIDs)
	}
	return nil
}
