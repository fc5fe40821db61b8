// Command saas is a multi-tenant SaaS API built on Tenancy: tenants are
// created through an admin API, each gets its own PostgreSQL schema (built by
// the embedded tenant migrations, confined by row level security) and Redis
// namespace, and every request runs as the tenant named by its X-Tenant
// header or subdomain.
//
//	go run ./examples/saas
//
// Configuration, all optional: DATABASE_URL (owner role) and APP_DATABASE_URL
// (app role), REDIS_URL (redis://host:port/db) or REDIS_ADDR, LISTEN_ADDR (default 127.0.0.1:8080), ADMIN_TOKEN
// (default: generated and printed), BASE_DOMAIN (tenant subdomains),
// RATE_LIMIT (requests per tenant per minute). Without DATABASE_URL it finds
// PostgreSQL and Redis on localhost (or starts Docker containers) and sets up
// a database and the two roles itself.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/tenant"
)

func main() {
	log := slog.New(tenant.NewLogHandler(slog.NewJSONHandler(os.Stderr, nil)))
	if err := run(log); err != nil {
		log.Error("saas stopped", "error", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := Config{
		OwnerURL:   os.Getenv("DATABASE_URL"),
		AppURL:     os.Getenv("APP_DATABASE_URL"),
		AdminToken: os.Getenv("ADMIN_TOKEN"),
		BaseDomain: os.Getenv("BASE_DOMAIN"),
		Logger:     log,
	}
	cfg.RateLimit, _ = strconv.Atoi(os.Getenv("RATE_LIMIT"))
	if cfg.AdminToken == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		cfg.AdminToken = hex.EncodeToString(b)
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if cfg.OwnerURL == "" || cfg.AppURL == "" {
		svc, err := testenv.FindPostgreSQL(ctx)
		if err != nil {
			return fmt.Errorf("%v\nset DATABASE_URL (owner role) and APP_DATABASE_URL (a NOSUPERUSER NOBYPASSRLS role), or run PostgreSQL on 127.0.0.1:5432", err)
		}
		closers = append(closers, svc.Close)
		if svc.Source == "docker" {
			log.Info("started a throwaway PostgreSQL container", "url", svc.URL)
		}
		if cfg.OwnerURL, cfg.AppURL, err = testenv.ExampleDatabase(ctx, svc.URL, "tenancy_saas"); err != nil {
			return err
		}
	}
	appConn, err := pgx.ParseConfig(cfg.AppURL)
	if err != nil {
		return fmt.Errorf("APP_DATABASE_URL: %w", err)
	}
	cfg.AppRole = appConn.User

	redisOpt := rueidis.ClientOption{}
	redisAddr := os.Getenv("REDIS_ADDR")
	if url := os.Getenv("REDIS_URL"); url != "" {
		if redisOpt, err = rueidis.ParseURL(url); err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		redisAddr = redisOpt.InitAddress[0]
	}
	if redisAddr == "" {
		svc, err := testenv.FindRedis(ctx)
		if err != nil {
			return fmt.Errorf("%v\nset REDIS_ADDR, or run Redis on 127.0.0.1:6379", err)
		}
		closers = append(closers, svc.Close)
		if svc.Source == "docker" {
			log.Info("started a throwaway Redis container", "addr", svc.URL)
		}
		redisAddr = svc.URL
	}
	if len(redisOpt.InitAddress) == 0 {
		redisOpt.InitAddress = []string{redisAddr}
	}
	rc, err := rueidis.NewClient(redisOpt)
	if err != nil {
		return fmt.Errorf("connect to Redis at %s: %w", redisAddr, err)
	}
	defer rc.Close()
	cfg.Redis = rc

	app, err := NewApp(ctx, cfg)
	if err != nil {
		return err
	}
	defer app.Close()

	addr := os.Getenv("LISTEN_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	srv := &http.Server{Addr: addr, Handler: app.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Printf(`
Tenancy SaaS example listening on http://%[1]s

  curl -s -X POST http://%[1]s/api/v1/tenants -H 'Authorization: Bearer %[2]s' -d '{"slug":"acme","name":"Acme"}'
  curl -s -X POST http://%[1]s/api/v1/projects -H 'X-Tenant: acme' -d '{"name":"apollo"}'
  curl -s http://%[1]s/api/v1/projects -H 'X-Tenant: acme'
  curl -s http://%[1]s/api/v1/projects -H 'X-Tenant: nobody'      # 404 problem+json
  curl -s -X POST http://%[1]s/api/v1/tenants/acme/suspend -H 'Authorization: Bearer %[2]s'
  curl -s http://%[1]s/health/ready

`, addr, cfg.AdminToken)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
