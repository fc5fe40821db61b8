// Command saas is a multi-tenant SaaS API built on Tenancy: tenants are
// created through an admin API, each gets its own PostgreSQL schema (built by
// the embedded tenant migrations, confined by row level security) and Redis
// namespace, and every request runs as the tenant its bearer token was
// issued for (X-Tenant or the subdomain, if given, must agree).
//
//	go run ./examples/saas
//
// Configuration, from the environment:
//
//   - DATABASE_URL (the owner role) and APP_DATABASE_URL (the app role: a
//     NOSUPERUSER NOBYPASSRLS role that is a member of no role) — both or
//     neither. Without them the example uses a local default: it connects to
//     ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
//     and sets up, with provision.Bootstrap, the database tenancy_saas and
//     the roles tenancy_saas_owner and tenancy_saas_app (password
//     "tenancy-example"), and says so. To start over:
//     DROP DATABASE tenancy_saas; DROP ROLE tenancy_saas_app, tenancy_saas_owner;
//   - REDIS_URL (default redis://127.0.0.1:6379/0).
//   - TOKEN_SECRET, which signs the tenant tokens (the same for every
//     instance; default: random, so tokens die with the process).
//   - LISTEN_ADDR (default 127.0.0.1:8080), ADMIN_TOKEN (default: generated
//     and printed), BASE_DOMAIN (tenant subdomains), RATE_LIMIT (requests
//     per tenant per minute).
//   - TENANT_CONNS (the most database connections one tenant may hold at
//     once; default a quarter of the pool) and STATEMENT_TIMEOUT (per tenant
//     statement, a Go duration; default 5s).
//   - OTEL_STDOUT=1 prints OpenTelemetry spans and, every 10 s, metrics to
//     stdout as JSON, each naming its tenant (package tenantotel).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/provision"
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
		// Every instance needs the same secret; without one, tokens die with
		// the process.
		TokenSecret: []byte(os.Getenv("TOKEN_SECRET")),
	}
	if len(cfg.TokenSecret) == 0 {
		log.Warn("TOKEN_SECRET is not set: tenant tokens are signed with a random secret and stop working when this process ends")
	}
	cfg.RateLimit, _ = strconv.Atoi(os.Getenv("RATE_LIMIT"))
	if v := os.Getenv("TENANT_CONNS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return fmt.Errorf("TENANT_CONNS %q: want a positive number of connections", v)
		}
		cfg.TenantConns = int32(n)
	}
	if v := os.Getenv("STATEMENT_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("STATEMENT_TIMEOUT %q: want a positive Go duration such as 2s", v)
		}
		cfg.StatementTimeout = d
	}
	if os.Getenv("OTEL_STDOUT") == "1" {
		tel, shutdown, err := stdoutTelemetry(os.Stdout, 10*time.Second)
		if err != nil {
			return fmt.Errorf("OTEL_STDOUT: %w", err)
		}
		defer func() { _ = shutdown(context.Background()) }()
		cfg.Telemetry = tel
	}
	if cfg.AdminToken == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		cfg.AdminToken = hex.EncodeToString(b)
	}
	switch {
	case cfg.OwnerURL == "" && cfg.AppURL == "":
		adminURL := envOr("ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
		var err error
		if cfg.OwnerURL, cfg.AppURL, err = localDatabase(ctx, adminURL, "tenancy_saas"); err != nil {
			return fmt.Errorf("set up the local default database through ADMIN_DATABASE_URL (%s): %w\n"+
				"set DATABASE_URL and APP_DATABASE_URL to use a database of your own", redactURL(adminURL), err)
		}
		log.Info("using the local default database tenancy_saas (roles tenancy_saas_owner, tenancy_saas_app)")
	case cfg.OwnerURL == "" || cfg.AppURL == "":
		return errors.New("set both DATABASE_URL (the owner role) and APP_DATABASE_URL (the app role), or neither for the local default")
	}
	appConn, err := pgx.ParseConfig(cfg.AppURL)
	if err != nil {
		return fmt.Errorf("APP_DATABASE_URL: %w", err)
	}
	cfg.AppRole = appConn.User

	redisURL := envOr("REDIS_URL", "redis://127.0.0.1:6379/0")
	redisOpt, err := rueidis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rc, err := rueidis.NewClient(redisOpt)
	if err != nil {
		return fmt.Errorf("connect to Redis at %s (REDIS_URL): %w", redactURL(redisURL), err)
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
	// Bind first: a second instance fails here, before it prints anything.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("LISTEN_ADDR %s: %w", addr, err)
	}
	srv := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	addr = ln.Addr().String()
	fmt.Printf(`
Tenancy SaaS example listening on http://%[1]s

  # the tenant, with its "token" (the tenant's credential):
  curl -s -X POST http://%[1]s/api/v1/tenants -H 'Authorization: Bearer %[2]s' -d '{"slug":"acme","name":"Acme"}'
  curl -s http://%[1]s/api/v1/tenants/acme -H 'Authorization: Bearer %[2]s'   # again, if acme exists
  TOKEN=...   # the "token" printed above
  curl -s -X POST http://%[1]s/api/v1/projects -H "Authorization: Bearer $TOKEN" -d '{"name":"apollo"}'
  curl -s http://%[1]s/api/v1/projects -H "Authorization: Bearer $TOKEN"
  curl -s http://%[1]s/api/v1/projects -H 'X-Tenant: acme'                      # 401: naming a tenant is not a credential
  curl -s -X POST http://%[1]s/api/v1/tenants/acme/suspend -H 'Authorization: Bearer %[2]s'
  curl -s http://%[1]s/api/v1/projects -H "Authorization: Bearer $TOKEN"        # 403: suspended
  curl -s -X POST http://%[1]s/api/v1/tenants/acme/resume -H 'Authorization: Bearer %[2]s'
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

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// localDatabase sets up (idempotently) the example's own database and roles
// through an administrator connection, and returns their URLs.
func localDatabase(ctx context.Context, adminURL, name string) (ownerURL, appURL string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", "", err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	const password = "tenancy-example" // a local development default; use DATABASE_URL elsewhere
	cfg := provision.BootstrapConfig{Database: name, OwnerRole: name + "_owner", OwnerPassword: password, AppRole: name + "_app", AppPassword: password}
	if err := provision.Bootstrap(ctx, admin, cfg); err != nil {
		return "", "", err
	}
	roleURL := func(role string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(role, password),
			Host: net.JoinHostPort(admin.Config().Host, strconv.Itoa(int(admin.Config().Port))), Path: "/" + name, RawQuery: "sslmode=disable"}
		return u.String()
	}
	return roleURL(cfg.OwnerRole), roleURL(cfg.AppRole), nil
}

// redactURL hides a URL's password for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
