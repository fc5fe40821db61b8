// Package webtest is the adapters' test bed: a throwaway database
// (provisiontest) with two tenants, acme and globex, each holding one note,
// a pool as the app role, and the middleware configuration the adapters
// are given.
package webtest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/provision/provisiontest"
	"github.com/tenancykit/tenancy/tenant"
)

// Bed is the test bed.
type Bed struct {
	Env  *provisiontest.Env
	Pool *pgtenant.Pool
	// Config resolves the tenant from the X-Tenant header by slug; /health
	// is exempt.
	Config tenant.MiddlewareConfig
}

// New sets up the bed for t.
func New(t *testing.T) *Bed {
	t.Helper()
	env := provisiontest.New(t, provisiontest.Options{
		Builder: provision.DDL(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL)`),
		Slugs:   []string{"acme", "globex"},
	})
	pool := env.AppPool(t)
	for i, rec := range env.Tenants {
		if _, err := pool.Exec(env.Context(i), "INSERT INTO notes (body) VALUES ($1)", "note of "+rec.Slug); err != nil {
			t.Fatal(err)
		}
	}
	return &Bed{Env: env, Pool: pool, Config: tenant.MiddlewareConfig{
		Resolve:     tenant.FromHeader("X-Tenant"),
		ExemptPaths: []string{"/health"},
		Lookup: tenant.LookupFunc(func(_ context.Context, key string) (tenant.Tenant, error) {
			for _, rec := range env.Tenants {
				if rec.Slug == key {
					return rec.Tenant(), nil
				}
			}
			return tenant.Tenant{}, tenant.ErrNotFound
		}),
	}}
}

// Notes is what a handler answers for GET /notes: the bodies of the notes
// the request's tenant sees through the pool, one per line.
func (b *Bed) Notes(ctx context.Context) (string, error) {
	rows, _ := b.Pool.Query(ctx, "SELECT body FROM notes ORDER BY id")
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return strings.Join(bodies, "\n"), err
}

// Case is one request to an adapter's server and what it must answer.
type Case struct {
	Path, Tenant string
	Code         int
	Body         string // contained in the response body
}

// Cases are the requests every adapter must answer alike: each tenant sees
// exactly its own note; no tenant, or an unknown one, never reaches the
// handler; an exempt path is served without one.
var Cases = []Case{
	{"/notes", "acme", http.StatusOK, "note of acme"},
	{"/notes", "globex", http.StatusOK, "note of globex"},
	{"/notes", "", http.StatusBadRequest, "tenant"},
	{"/notes", "initech", http.StatusNotFound, "tenant"},
	{"/health", "", http.StatusOK, "ok"},
}

// Run sends each case to h, and checks that the handler ran only for the
// cases that reach it (ran reports, and resets, whether it did).
func Run(t *testing.T, h http.Handler, ran func() bool) {
	t.Helper()
	for _, c := range Cases {
		req := httptest.NewRequest(http.MethodGet, c.Path, nil)
		if c.Tenant != "" {
			req.Header.Set("X-Tenant", c.Tenant)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != c.Code || !strings.Contains(string(body), c.Body) {
			t.Errorf("GET %s as %q: %d %q; want %d with %q", c.Path, c.Tenant, rec.Code, body, c.Code, c.Body)
		}
		if c.Tenant == "acme" && strings.Contains(string(body), "globex") || c.Tenant == "globex" && strings.Contains(string(body), "acme") {
			t.Errorf("GET %s as %q saw the other tenant's note: %q", c.Path, c.Tenant, body)
		}
		if got, want := ran(), c.Code == http.StatusOK; got != want {
			t.Errorf("GET %s as %q: handler ran %v, want %v", c.Path, c.Tenant, got, want)
		}
	}
}
