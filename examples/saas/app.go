package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/migrate"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
	"github.com/tenancykit/tenancy/tenantotel"
)

//go:embed migrations
var migrations embed.FS

// Config is what the server needs; main fills it from the environment.
type Config struct {
	OwnerURL   string // the owner role: provisioning and migrations
	AppURL     string // the app role: NOSUPERUSER NOBYPASSRLS, used by pgtenant
	AppRole    string // the app role's name
	Redis      rueidis.Client
	AdminToken string
	RateLimit  int // requests per tenant per minute; 0 means 600
	BaseDomain string
	Logger     *slog.Logger
	// TokenSecret signs the tenant tokens the admin API hands out (see
	// App.TenantToken); every instance of the service needs the same one.
	// Empty means a random secret: tokens then die with the process.
	TokenSecret []byte
	// TrustTenantHeader lets a request name its tenant with X-Tenant alone,
	// without a token: only for internal hops behind a gateway that has
	// authenticated the caller and set the header itself. Off by default:
	// naming a tenant is not being allowed into it.
	TrustTenantHeader bool
	// Telemetry, if set, records spans and metrics per tenant for every
	// statement, connection wait and Redis command (see main.go's
	// OTEL_STDOUT for one that prints them).
	Telemetry *tenantotel.Telemetry
	// TenantConns is the most database connections one tenant may hold at
	// once; 0 means a fair share of the pool (a quarter of MaxConns).
	TenantConns int32
	// StatementTimeout bounds each tenant statement; 0 means 5 s.
	StatementTimeout time.Duration
}

// App is the multi-tenant SaaS API.
type App struct {
	cfg      Config
	owner    *pgxpool.Pool
	pool     *pgtenant.Pool
	redis    *redistenant.Client
	registry *provision.Registry
	lookup   *tenant.Cache
	migrator *migrate.Migrator
	log      *slog.Logger
	// stopWatch ends the registry watch that keeps lookup fresh.
	stopWatch context.CancelFunc
}

// NewApp connects, applies the shared and tenant migrations, and returns the
// app. Close it when done.
func NewApp(ctx context.Context, cfg Config) (*App, error) {
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 600
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.TokenSecret) == 0 {
		cfg.TokenSecret = make([]byte, 32)
		_, _ = rand.Read(cfg.TokenSecret)
	}
	if cfg.StatementTimeout == 0 {
		cfg.StatementTimeout = 5 * time.Second
	}
	rc := cfg.Redis
	if cfg.Telemetry != nil {
		rc = cfg.Telemetry.WrapRedis(rc)
	}
	// A tenant may have at most 16 Redis calls in flight: a burst of one
	// tenant waits for its own calls, not everyone's.
	a := &App{cfg: cfg, log: cfg.Logger, redis: redistenant.New(rc, redistenant.Config{MaxInFlight: 16})}
	var err error
	if a.owner, err = pgxpool.New(ctx, cfg.OwnerURL); err != nil {
		return nil, fmt.Errorf("owner pool: %w", err)
	}
	ownerConn, err := pgx.ParseConfig(cfg.OwnerURL)
	if err != nil {
		return nil, err
	}
	shared, _ := fs.Sub(migrations, "migrations/shared")
	tenantChain, _ := fs.Sub(migrations, "migrations/tenant")
	a.migrator, err = migrate.New(migrate.Config{
		ConnConfig: ownerConn, Shared: shared, Tenant: tenantChain, AppRole: cfg.AppRole, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	a.registry, err = provision.New(ctx, provision.Config{
		Owner: a.owner, AppRole: cfg.AppRole, SchemaBuilder: a.migrator, Purger: boundedPurger{a.redis, purgeTimeout}, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if _, err := a.migrator.UpShared(ctx); err != nil {
		return nil, err
	}
	rep, err := a.migrator.UpAll(ctx, a.registry)
	if err != nil {
		return nil, err
	}
	if err := rep.Err(); err != nil {
		a.log.ErrorContext(ctx, "some tenants failed to migrate", "error", err)
	}
	poolCfg, err := pgxpool.ParseConfig(cfg.AppURL)
	if err != nil {
		return nil, err
	}
	// One noisy tenant cannot take every connection: each holds at most a
	// fair share, waiting tenants are served in turn, and every statement
	// has a deadline. The tenant is named on its server sessions
	// (pg_stat_activity.application_name) while they run its statements.
	pcfg := pgtenant.Config{
		PoolConfig: poolCfg,
		TenantLimits: &pgtenant.TenantLimits{Default: pgtenant.Limits{
			MaxConns: cfg.TenantConns, StatementTimeout: cfg.StatementTimeout,
		}},
		TagSessions: true,
	}
	if cfg.Telemetry != nil {
		poolCfg.ConnConfig.Tracer = cfg.Telemetry.Tracer(poolCfg.ConnConfig.Tracer)
		pcfg.Observer = cfg.Telemetry.Observer()
	}
	if a.pool, err = pgtenant.New(ctx, pcfg); err != nil {
		return nil, err
	}
	// A short TTL, and the admin handlers invalidate on every change; the
	// registry watch carries changes made by any other instance (or an
	// admin tool) to this instance's cache within milliseconds.
	a.lookup = tenant.NewCache(a.registry, tenant.CacheConfig{TTL: 10 * time.Second, NegativeTTL: time.Second})
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	a.stopWatch = stopWatch
	go func() { _ = a.registry.Watch(watchCtx, a.lookup) }()
	return a, nil
}

// Close releases the pools (not the Redis client, which the caller owns).
func (a *App) Close() {
	a.stopWatch()
	a.pool.Close()
	a.owner.Close()
}

// Handler returns the HTTP API.
func (a *App) Handler() http.Handler {
	// The tenant is the one the caller's verified credential names
	// (authenticate); X-Tenant and the subdomain may only agree with it.
	mw, err := tenant.Middleware(tenant.MiddlewareConfig{Resolve: tenant.FromContextValue(boundKey{}), Lookup: a.lookup, Logger: a.log})
	if err != nil {
		panic(err) // the configuration above is complete
	}
	scoped := http.NewServeMux()
	scoped.HandleFunc("GET /api/v1/projects", a.listProjects)
	scoped.HandleFunc("POST /api/v1/projects", a.createProject)
	scoped.HandleFunc("GET /api/v1/projects/{id}", a.getProject)
	scoped.HandleFunc("PUT /api/v1/projects/{id}", a.updateProject)
	scoped.HandleFunc("DELETE /api/v1/projects/{id}", a.deleteProject)
	scoped.HandleFunc("GET /api/v1/projects/{id}/notes", a.listNotes)
	scoped.HandleFunc("POST /api/v1/projects/{id}/notes", a.createNote)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /health/ready", a.ready)
	mux.Handle("POST /api/v1/tenants", a.admin(a.createTenant))
	mux.Handle("GET /api/v1/tenants", a.admin(a.listTenants))
	mux.Handle("GET /api/v1/tenants/{slug}", a.admin(a.getTenant))
	mux.Handle("POST /api/v1/tenants/{slug}/suspend", a.admin(a.suspendTenant))
	mux.Handle("POST /api/v1/tenants/{slug}/resume", a.admin(a.resumeTenant))
	mux.Handle("DELETE /api/v1/tenants/{slug}", a.admin(a.deleteTenant))
	mux.Handle("/api/v1/", a.authenticate(mw(recordTenant(a.rateLimit(problems(scoped))))))
	return a.logRequests(withTimeout(problems(mux), requestTimeout))
}

// ---- health

func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.pool.Ping(ctx); err != nil {
		a.log.WarnContext(ctx, "not ready: PostgreSQL", "error", err)
		tenant.WriteProblem(w, tenant.Problem{Status: 503, Detail: "PostgreSQL is not reachable"})
		return
	}
	raw := a.redis.Unwrap()
	if err := raw.Do(ctx, raw.B().Ping().Build()).Error(); err != nil {
		a.log.WarnContext(ctx, "not ready: Redis", "error", err)
		tenant.WriteProblem(w, tenant.Problem{Status: 503, Detail: "Redis is not reachable"})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

// ---- tenant credentials

// TenantToken is the credential of tenant id: "<id>.<HMAC-SHA256 of id>",
// signed with Config.TokenSecret. The admin API returns it with the tenant.
// Rotating the secret revokes every token.
func (a *App) TenantToken(id string) string {
	return id + "." + a.sign(id)
}

func (a *App) sign(id string) string {
	mac := hmac.New(sha256.New, a.cfg.TokenSecret)
	mac.Write([]byte("tenancy-saas-tenant:" + id))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// verify returns the tenant ID a token was issued for.
func (a *App) verify(token string) (string, bool) {
	i := strings.LastIndexByte(token, '.')
	if i <= 0 {
		return "", false
	}
	id, sig := token[:i], token[i+1:]
	return id, hmac.Equal([]byte(sig), []byte(a.sign(id)))
}

type boundKey struct{}

// authenticate binds a request to the tenant its bearer token was issued
// for: no valid token is 401; a token of one tenant with X-Tenant or a
// subdomain naming another is 403. With Config.TrustTenantHeader, X-Tenant
// alone is accepted (internal hops only).
func (a *App) authenticate(next http.Handler) http.Handler {
	named := tenant.FromHeader("X-Tenant")
	if a.cfg.BaseDomain != "" {
		named = tenant.FirstOf(named, tenant.FromSubdomain(a.cfg.BaseDomain))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, hasName := named(r)
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		id, ok := "", false
		if strings.EqualFold(scheme, "Bearer") {
			id, ok = a.verify(token)
		}
		switch {
		case !ok && a.cfg.TrustTenantHeader && hasName:
			id = key
		case !ok:
			w.Header().Set("WWW-Authenticate", `Bearer realm="tenant"`)
			tenant.WriteProblem(w, tenant.Problem{Status: 401, Detail: "tenant endpoints need Authorization: Bearer <tenant token> (the admin API returns it with the tenant)"})
			return
		case hasName:
			// The name must be the token's tenant, by ID or by slug.
			if key != id {
				t, err := a.lookup.LookupTenant(r.Context(), id)
				if err == nil && key != t.Slug {
					tenant.WriteProblem(w, tenant.Problem{Status: 403, Detail: "the credential is for another tenant"})
					return
				}
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), boundKey{}, id)))
	})
}

// ---- admin

func (a *App) admin(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The scheme is case-insensitive (RFC 9110); the token is compared
		// in constant time.
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(a.cfg.AdminToken)) != 1 {
			tenant.WriteProblem(w, tenant.Problem{Status: 401, Detail: "admin endpoints need Authorization: Bearer <ADMIN_TOKEN>"})
			return
		}
		next(w, r)
	})
}

type tenantJSON struct {
	ID        string    `json:"id"`
	Slug      string    `json:"slug"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	Schema    string    `json:"schema"`
	CreatedAt time.Time `json:"created_at"`
	// Token is the tenant's credential (see App.TenantToken).
	Token string `json:"token,omitempty"`
}

func (a *App) toJSON(r provision.Record) tenantJSON {
	return tenantJSON{ID: r.ID, Slug: r.Slug, Name: r.Name, Status: string(r.Status), Schema: r.SchemaName, CreatedAt: r.CreatedAt,
		Token: a.TenantToken(r.ID)}
}

func (a *App) createTenant(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Slug string `json:"slug"`
		Name string `json:"name"`
	}
	if !decode(w, r, &in) {
		return
	}
	rec, err := a.registry.Create(r.Context(), provision.Spec{Slug: in.Slug, Name: in.Name})
	switch {
	case errors.Is(err, tenant.ErrInvalidSlug), errors.Is(err, tenant.ErrInvalidID), errors.Is(err, provision.ErrInvalidName):
		tenant.WriteProblem(w, tenant.Problem{Status: 400, Detail: err.Error()})
		return
	case errors.Is(err, provision.ErrTenantExists):
		tenant.WriteProblem(w, tenant.Problem{Status: 409, Detail: fmt.Sprintf("tenant %q exists", in.Slug)})
		return
	case err != nil:
		a.fail(w, r, err)
		return
	}
	a.lookup.Invalidate(rec.Slug)
	a.lookup.Invalidate(rec.ID)
	writeJSON(w, 201, a.toJSON(rec))
}

func (a *App) listTenants(w http.ResponseWriter, r *http.Request) {
	recs, err := a.registry.List(r.Context(), provision.ListOptions{After: r.URL.Query().Get("after"), Status: provision.Status(r.URL.Query().Get("status"))})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]tenantJSON, len(recs))
	for i, rec := range recs {
		out[i] = a.toJSON(rec)
	}
	writeJSON(w, 200, out)
}

func (a *App) getTenant(w http.ResponseWriter, r *http.Request) {
	rec, err := a.registry.Get(r.Context(), r.PathValue("slug"))
	if errors.Is(err, provision.ErrTenantNotFound) {
		tenant.WriteProblem(w, tenant.Problem{Status: 404, Detail: "no such tenant"})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, 200, a.toJSON(rec))
}

func (a *App) suspendTenant(w http.ResponseWriter, r *http.Request) {
	a.lifecycle(w, r, a.registry.Suspend)
}

func (a *App) resumeTenant(w http.ResponseWriter, r *http.Request) {
	a.lifecycle(w, r, a.registry.Resume)
}

func (a *App) deleteTenant(w http.ResponseWriter, r *http.Request) {
	a.lifecycle(w, r, a.registry.Delete)
}

func (a *App) lifecycle(w http.ResponseWriter, r *http.Request, op func(context.Context, string) error) {
	slug := r.PathValue("slug")
	rec, getErr := a.registry.Get(r.Context(), slug)
	err := op(r.Context(), slug)
	switch {
	case errors.Is(err, provision.ErrTenantNotFound):
		tenant.WriteProblem(w, tenant.Problem{Status: 404, Detail: "no such tenant"})
		return
	case errors.Is(err, provision.ErrInvalidTransition):
		tenant.WriteProblem(w, tenant.Problem{Status: 409, Detail: err.Error()})
		return
	case errors.Is(err, context.DeadlineExceeded):
		// Delete's Redis purge ran out of time: every step reruns.
		tenant.WriteProblem(w, tenant.Problem{Status: 503, Detail: "a dependency did not answer in time; the operation is resumable: send it again"})
		return
	case err != nil:
		a.fail(w, r, err)
		return
	}
	a.lookup.Invalidate(slug)
	if getErr == nil {
		a.lookup.Invalidate(rec.ID)
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- tenant resources

type project struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

type note struct {
	ID        int64     `json:"id"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

func (a *App) listProjects(w http.ResponseWriter, r *http.Request) {
	rows, _ := a.pool.Query(r.Context(), "SELECT id, name, created_at FROM projects ORDER BY id")
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[project])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, 200, out)
}

func (a *App) createProject(w http.ResponseWriter, r *http.Request) {
	name, ok := projectName(w, r)
	if !ok {
		return
	}
	var p project
	err := a.pool.QueryRow(r.Context(), "INSERT INTO projects (name) VALUES ($1) RETURNING id, name, created_at", name).Scan(&p.ID, &p.Name, &p.CreatedAt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		tenant.WriteProblem(w, tenant.Problem{Status: 409, Detail: fmt.Sprintf("a project named %q exists", name)})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, 201, p)
}

// cacheTTL is how long a project stays in the tenant's Redis cache.
const cacheTTL = time.Minute

func (a *App) getProject(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	key := "project:" + strconv.FormatInt(id, 10) // stored as t:{<tenant>}:project:<id>
	rctx, cancel := redisCtx(ctx)
	cached, err := a.redis.Do(rctx, a.redis.B().Get().Key(key).Build()).ToString()
	cancel()
	if err == nil {
		w.Header().Set("X-Cache", "hit")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(cached))
		return
	}
	var p project
	err = a.pool.QueryRow(ctx, "SELECT id, name, created_at FROM projects WHERE id = $1", id).Scan(&p.ID, &p.Name, &p.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		tenant.WriteProblem(w, tenant.Problem{Status: 404, Detail: "no such project"})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body, _ := json.Marshal(p)
	rctx, cancel = redisCtx(ctx)
	defer cancel()
	if err := a.redis.Do(rctx, a.redis.B().Set().Key(key).Value(string(body)).Ex(cacheTTL).Build()).Error(); err != nil {
		a.log.WarnContext(ctx, "cache write failed", "error", err)
	}
	w.Header().Set("X-Cache", "miss")
	writeJSON(w, 200, p)
}

func (a *App) updateProject(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	name, ok := projectName(w, r)
	if !ok {
		return
	}
	var p project
	err := a.pool.QueryRow(r.Context(), "UPDATE projects SET name = $2 WHERE id = $1 RETURNING id, name, created_at", id, name).Scan(&p.ID, &p.Name, &p.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		tenant.WriteProblem(w, tenant.Problem{Status: 404, Detail: "no such project"})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.forget(r.Context(), id)
	writeJSON(w, 200, p)
}

func (a *App) deleteProject(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ct, err := a.pool.Exec(r.Context(), "DELETE FROM projects WHERE id = $1", id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if ct.RowsAffected() == 0 {
		tenant.WriteProblem(w, tenant.Problem{Status: 404, Detail: "no such project"})
		return
	}
	a.forget(r.Context(), id)
	w.WriteHeader(http.StatusNoContent)
}

func (a *App) forget(ctx context.Context, id int64) {
	ctx, cancel := redisCtx(ctx)
	defer cancel()
	if err := a.redis.Do(ctx, a.redis.B().Del().Key("project:"+strconv.FormatInt(id, 10)).Build()).Error(); err != nil {
		a.log.WarnContext(ctx, "cache invalidation failed", "error", err)
	}
}

func (a *App) listNotes(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	rows, _ := a.pool.Query(r.Context(), "SELECT id, body, created_at FROM notes WHERE project_id = $1 ORDER BY id", id)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[note])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, 200, out)
}

func (a *App) createNote(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var in struct {
		Body string `json:"body"`
	}
	if !decode(w, r, &in) {
		return
	}
	if in.Body == "" || len(in.Body) > maxNoteLen {
		tenant.WriteProblem(w, tenant.Problem{Status: 400, Detail: fmt.Sprintf("body is required, at most %d bytes", maxNoteLen)})
		return
	}
	var n note
	err := a.pool.QueryRow(r.Context(), "INSERT INTO notes (project_id, body) VALUES ($1, $2) RETURNING id, body, created_at", id, in.Body).Scan(&n.ID, &n.Body, &n.CreatedAt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" { // RLS hides other tenants' projects: the FK finds none
		tenant.WriteProblem(w, tenant.Problem{Status: 404, Detail: "no such project"})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, 201, n)
}

// maxNoteLen is the longest note body, in bytes.
const maxNoteLen = 10000

// ---- middleware and helpers

// rateLimit allows cfg.RateLimit requests per tenant per minute, counted in
// the tenant's Redis namespace.
func (a *App) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := redisCtx(r.Context())
		defer cancel()
		key := "ratelimit:" + strconv.FormatInt(time.Now().Unix()/60, 10)
		res := a.redis.DoMulti(ctx, a.redis.B().Incr().Key(key).Build(), a.redis.B().Expire().Key(key).Seconds(120).Build())
		n, err := res[0].AsInt64()
		if err != nil {
			a.log.WarnContext(ctx, "rate limit unavailable; allowing the request", "error", err)
		} else if n > int64(a.cfg.RateLimit) {
			w.Header().Set("Retry-After", "60")
			tenant.WriteProblem(w, tenant.Problem{Status: 429, Detail: fmt.Sprintf("more than %d requests this minute", a.cfg.RateLimit)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

func (a *App) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		var seen tenant.Tenant
		next.ServeHTTP(rec, r.WithContext(contextWithProbe(r.Context(), &seen)))
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start)}
		if !seen.IsZero() {
			attrs = append(attrs, "tenant_id", seen.ID, "tenant_slug", seen.Slug)
		}
		a.log.InfoContext(r.Context(), "request", attrs...)
	})
}

func (a *App) fail(w http.ResponseWriter, r *http.Request, err error) {
	// Over the tenant's budget: its statement ran past its timeout, or its
	// calls waited for a connection until the request's deadline.
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "57014" || errors.Is(err, pgtenant.ErrTenantLimit) || errors.Is(err, context.DeadlineExceeded) {
		a.log.WarnContext(r.Context(), "request over the tenant's budget", "path", r.URL.Path, "error", err)
		w.Header().Set("Retry-After", "1")
		tenant.WriteProblem(w, tenant.Problem{Status: 503, Detail: "the tenant's database budget is exhausted; retry later"})
		return
	}
	a.log.ErrorContext(r.Context(), "request failed", "path", r.URL.Path, "error", err)
	tenant.WriteProblem(w, tenant.Problem{Status: 500, Detail: "internal error"})
}

// decode reads one JSON object into v: unknown fields, trailing data after
// it, and text holding a NUL character (PostgreSQL's text cannot store one)
// are 400s, not 500s.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		tenant.WriteProblem(w, tenant.Problem{Status: 400, Detail: "invalid JSON body: " + err.Error()})
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		tenant.WriteProblem(w, tenant.Problem{Status: 400, Detail: "invalid JSON body: data after the object"})
		return false
	}
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		if f := rv.Field(i); f.Kind() == reflect.String && strings.ContainsRune(f.String(), 0) {
			tenant.WriteProblem(w, tenant.Problem{Status: 400, Detail: "invalid JSON body: " + rv.Type().Field(i).Tag.Get("json") + " holds a NUL character"})
			return false
		}
	}
	return true
}

// requestTimeout bounds every request, and with it every PostgreSQL and
// Redis call it makes; redisTimeout bounds each cache call, so a Redis that
// stopped answering costs a cached read this much before it falls back to
// PostgreSQL.
const (
	requestTimeout = 10 * time.Second
	redisTimeout   = 300 * time.Millisecond
)

func withTimeout(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// purgeTimeout bounds the Redis purge of a tenant's Delete: with Redis down,
// Delete fails at its "purge keys" step (the tenant stays deleting, its
// schema already gone) and a later DELETE resumes there.
const purgeTimeout = 2 * time.Second

// boundedPurger gives each purge its own deadline.
type boundedPurger struct {
	p provision.Purger
	d time.Duration
}

func (b boundedPurger) Purge(ctx context.Context, t tenant.Tenant) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.p.Purge(ctx, t)
}

// redisCtx bounds one cache call.
func redisCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, redisTimeout)
}

// problems answers the requests mux has no route for — unknown paths (404)
// and known paths with another method (405, with Allow) — with
// application/problem+json, like every other error of the API.
func problems(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}, status: http.StatusNotFound}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		detail := "no such route: " + r.URL.Path
		if rec.status == http.StatusMethodNotAllowed {
			detail = r.Method + " is not allowed on " + r.URL.Path
		}
		tenant.WriteProblem(w, tenant.Problem{Status: rec.status, Detail: detail})
	})
}

// headerRecorder keeps what the mux's 404/405 handler sets, and drops its
// text/plain body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(code int)        { h.status = code }

// projectName reads {"name": ...} and checks it.
func projectName(w http.ResponseWriter, r *http.Request) (string, bool) {
	var in struct {
		Name string `json:"name"`
	}
	if !decode(w, r, &in) {
		return "", false
	}
	if in.Name = strings.TrimSpace(in.Name); in.Name == "" || len(in.Name) > 200 {
		tenant.WriteProblem(w, tenant.Problem{Status: 400, Detail: "name is required, at most 200 bytes"})
		return "", false
	}
	return in.Name, true
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		tenant.WriteProblem(w, tenant.Problem{Status: 400, Detail: "id must be a positive integer"})
		return 0, false
	}
	return id, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
