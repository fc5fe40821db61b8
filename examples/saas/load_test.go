package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
)

// BenchmarkLoad drives a bounded loopback load against the SaaS example and,
// in the same run, against a variant without the tenancy layer: one shared
// table filtered by a tenant_id the handler takes from the header, plain
// pgxpool and rueidis, no middleware, no RLS. Both get 50 tenants, the same
// request mix (4 lists : 1 create) from 16 clients, and the same per-request
// Redis counter. It reports requests/s, p50 and p99 latency and errors.
//
//	TENANCY_LOAD_DURATION=60s go test -run '^$' -bench Load -benchtime 1x ./examples/saas/
//
// The duration defaults to 10s.
func BenchmarkLoad(b *testing.B) {
	duration := 10 * time.Second
	if d, err := time.ParseDuration(os.Getenv("TENANCY_LOAD_DURATION")); err == nil && d > 0 {
		duration = d
	}
	rc := testenv.RedisClient(b)
	pg := testenv.PostgreSQL(b).NewDatabase(b)
	app, err := NewApp(context.Background(), Config{OwnerURL: pg.OwnerURL, AppURL: pg.AppURL, AppRole: pg.AppRole,
		Redis: rc, AdminToken: adminToken, RateLimit: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer app.Close()
	tenancySrv := httptest.NewServer(app.Handler())
	defer tenancySrv.Close()
	plainSrv := httptest.NewServer(plainHandler(b, pg.OwnerURL, rc))
	defer plainSrv.Close()

	var slugs []string
	for i := range 50 {
		s := fmt.Sprintf("load_%02d", i)
		req, _ := http.NewRequest("POST", tenancySrv.URL+"/api/v1/tenants", strings.NewReader(fmt.Sprintf(`{"slug":%q}`, s)))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 201 {
			b.Fatalf("create tenant: %v %v", err, resp)
		}
		resp.Body.Close()
		slugs = append(slugs, s)
	}
	for _, v := range []struct{ name, url string }{{"tenancy", tenancySrv.URL}, {"plain", plainSrv.URL}} {
		b.Run("impl="+v.name, func(b *testing.B) {
			r := runLoad(v.url, slugs, 16, duration)
			b.ReportMetric(r.rps, "req/s")
			b.ReportMetric(float64(r.p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs")
			b.ReportMetric(float64(r.errors), "errors")
		})
	}
}

type loadResult struct {
	rps      float64
	p50, p99 time.Duration
	errors   int64
}

func runLoad(base string, slugs []string, clients int, d time.Duration) loadResult {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var errs, n atomic.Int64
	lat := make([][]time.Duration, clients)
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				slug := slugs[(c*13+i)%len(slugs)]
				method, path, body := "GET", "/api/v1/projects", ""
				if i%5 == 4 {
					method, body = "POST", fmt.Sprintf(`{"name":"p-%d-%d"}`, c, i)
				}
				req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
				req.Header.Set("X-Tenant", slug)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 300 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				lat[c] = append(lat[c], time.Since(t0))
				n.Add(1)
				if err != nil {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	return loadResult{rps: float64(n.Load()) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99), errors: errs.Load()}
}

// plainHandler is the baseline: what a service without the tenancy layer
// does — one table for everyone, filtered by the header's value in SQL.
func plainHandler(b *testing.B, ownerURL string, rc rueidis.Client) http.Handler {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, ownerURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.plain_projects (id bigserial PRIMARY KEY, tenant text NOT NULL,
		name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (tenant, name))`); err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	count := func(ctx context.Context, t string) {
		key := "plain:" + t + ":ratelimit:" + fmt.Sprint(time.Now().Unix()/60)
		rc.DoMulti(ctx, rc.B().Incr().Key(key).Build(), rc.B().Expire().Key(key).Seconds(120).Build())
	}
	mux.HandleFunc("GET /api/v1/projects", func(w http.ResponseWriter, r *http.Request) {
		t := r.Header.Get("X-Tenant")
		count(r.Context(), t)
		rows, _ := pool.Query(r.Context(), "SELECT id, name, created_at FROM public.plain_projects WHERE tenant = $1 ORDER BY id", t)
		out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[project])
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		writeJSON(w, 200, out)
	})
	mux.HandleFunc("POST /api/v1/projects", func(w http.ResponseWriter, r *http.Request) {
		t := r.Header.Get("X-Tenant")
		count(r.Context(), t)
		name, ok := projectName(w, r)
		if !ok {
			return
		}
		var p project
		if err := pool.QueryRow(r.Context(), "INSERT INTO public.plain_projects (tenant, name) VALUES ($1, $2) RETURNING id, name, created_at", t, name).
			Scan(&p.ID, &p.Name, &p.CreatedAt); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		writeJSON(w, 201, p)
	})
	return mux
}
