package tenant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tenancykit/tenancy/tenant"
)

// registry is a Lookup over a fixed set of tenants, keyed by ID and slug.
type registry struct {
	active    map[string]tenant.Tenant
	suspended map[string]bool
	fail      error
	calls     atomic.Int64
}

func newRegistry() *registry {
	r := &registry{active: map[string]tenant.Tenant{}, suspended: map[string]bool{}}
	for _, t := range []tenant.Tenant{{ID: "id-acme", Slug: "acme"}, {ID: "id-globex", Slug: "globex"}} {
		r.active[t.ID], r.active[t.Slug] = t, t
	}
	r.suspended["initech"] = true
	return r
}

func (r *registry) LookupTenant(_ context.Context, key string) (tenant.Tenant, error) {
	r.calls.Add(1)
	if r.fail != nil {
		return tenant.Tenant{}, r.fail
	}
	if r.suspended[key] {
		return tenant.Tenant{}, tenant.ErrSuspended
	}
	if t, ok := r.active[key]; ok {
		return t, nil
	}
	return tenant.Tenant{}, tenant.ErrNotFound
}

// echo answers with the tenant of the request context.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	t, err := tenant.Require(r.Context())
	if err != nil {
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("no tenant"))
		return
	}
	_, _ = w.Write([]byte(t.ID + "/" + t.Slug))
})

func newHandler(t *testing.T, cfg tenant.MiddlewareConfig) http.Handler {
	t.Helper()
	mw, err := tenant.Middleware(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return mw(echo)
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	h := newHandler(t, tenant.MiddlewareConfig{
		Resolve: tenant.FirstOf(
			tenant.FromHeader("X-Tenant"),
			tenant.FromSubdomain("example.com"),
			tenant.FromPathPrefix("/t/"),
		),
		Lookup:      reg,
		ExemptPaths: []string{"/health", "/public/"},
		Logger:      slog.New(slog.DiscardHandler),
	})
	tests := []struct {
		name       string
		host, path string
		header     string
		wantStatus int
		wantBody   string // for 200 responses
		wantDetail string // for problem responses
	}{
		{name: "header by slug", path: "/x", header: "acme", wantStatus: 200, wantBody: "id-acme/acme"},
		{name: "header by id", path: "/x", header: "id-globex", wantStatus: 200, wantBody: "id-globex/globex"},
		{name: "subdomain", host: "globex.example.com:8080", path: "/x", wantStatus: 200, wantBody: "id-globex/globex"},
		{name: "path prefix", path: "/t/acme/projects", wantStatus: 200, wantBody: "id-acme/acme"},
		{name: "header wins over subdomain", host: "globex.example.com", path: "/x", header: "acme", wantStatus: 200, wantBody: "id-acme/acme"},
		{name: "no key", path: "/x", wantStatus: 400, wantDetail: "the request does not name a tenant"},
		{name: "nested subdomain is no key", host: "a.globex.example.com", path: "/x", wantStatus: 400, wantDetail: "the request does not name a tenant"},
		{name: "unknown", path: "/x", header: "nobody", wantStatus: 404, wantDetail: "no such tenant"},
		{name: "key that cannot be valid", path: "/x", header: "a:b", wantStatus: 404, wantDetail: "no such tenant"},
		{name: "suspended", path: "/x", header: "initech", wantStatus: 403, wantDetail: "the tenant is suspended"},
		{name: "exempt exact path", path: "/health", wantStatus: http.StatusTeapot, wantBody: "no tenant"},
		{name: "exempt subtree", path: "/public/logo.png", wantStatus: http.StatusTeapot, wantBody: "no tenant"},
		{name: "dot-dot does not escape into exemption", path: "/health/../x", wantStatus: 400, wantDetail: "the request does not name a tenant"},
		{name: "exempt is exact", path: "/healthz", wantStatus: 400, wantDetail: "the request does not name a tenant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest("GET", "http://localhost"+tc.path, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.header != "" {
				req.Header.Set("X-Tenant", tc.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantDetail == "" {
				if got := rec.Body.String(); got != tc.wantBody {
					t.Errorf("body %q, want %q", got, tc.wantBody)
				}
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
			var got tenant.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body is not a problem: %v: %s", err, rec.Body)
			}
			want := tenant.Problem{Type: "about:blank", Title: http.StatusText(tc.wantStatus), Status: tc.wantStatus, Detail: tc.wantDetail, Instance: req.URL.Path}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("problem (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMiddlewareLookupFailureHidesDetails(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	reg.fail = errors.New(`pq: password authentication failed for user "owner" at 10.0.0.7`)
	var logs bytes.Buffer
	h := newHandler(t, tenant.MiddlewareConfig{
		Resolve: tenant.FromHeader("X-Tenant"),
		Lookup:  reg,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("X-Tenant", "acme")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "password") || strings.Contains(rec.Body.String(), "10.0.0.7") {
		t.Errorf("response leaks the internal error: %s", rec.Body)
	}
	if !strings.Contains(logs.String(), "password authentication failed") {
		t.Errorf("the cause was not logged: %q", logs.String())
	}
}

func TestMiddlewareRejectsInvalidTenantFromLookup(t *testing.T) {
	t.Parallel()
	lookup := tenant.LookupFunc(func(context.Context, string) (tenant.Tenant, error) {
		return tenant.Tenant{ID: "x", Slug: "Not Valid"}, nil
	})
	h := newHandler(t, tenant.MiddlewareConfig{Resolve: tenant.FromHeader("X-Tenant"), Lookup: lookup, Logger: slog.New(slog.DiscardHandler)})
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("X-Tenant", "x")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503 for a lookup that returned an invalid tenant", rec.Code)
	}
}

func TestMiddlewareConfigErrors(t *testing.T) {
	t.Parallel()
	if _, err := tenant.Middleware(tenant.MiddlewareConfig{Lookup: newRegistry()}); !errors.Is(err, tenant.ErrInvalidConfig) || !strings.Contains(err.Error(), "Resolve") {
		t.Errorf("missing Resolve: %v", err)
	}
	if _, err := tenant.Middleware(tenant.MiddlewareConfig{Resolve: tenant.FromHeader("X-Tenant")}); !errors.Is(err, tenant.ErrInvalidConfig) || !strings.Contains(err.Error(), "Lookup") {
		t.Errorf("missing Lookup: %v", err)
	}
}

// boundKey is where an authentication middleware would store the tenant of a
// verified credential.
type boundKey struct{}

func TestResolvers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		res     tenant.Resolver
		host    string
		path    string
		header  string
		wantKey string
		wantOK  bool
	}{
		{"header", tenant.FromHeader("x-tenant"), "h", "/", "acme", "acme", true},
		{"blank header", tenant.FromHeader("X-Tenant"), "h", "/", "  ", "", false},
		{"subdomain", tenant.FromSubdomain("Example.COM."), "ACME.example.com", "/", "", "acme", true},
		{"subdomain trailing dot", tenant.FromSubdomain("example.com"), "acme.example.com.", "/", "", "acme", true},
		{"base domain", tenant.FromSubdomain("example.com"), "example.com", "/", "", "", false},
		{"other domain", tenant.FromSubdomain("example.com"), "acme.example.org", "/", "", "", false},
		{"lookalike domain", tenant.FromSubdomain("example.com"), "acmeexample.com", "/", "", "", false},
		{"path", tenant.FromPathPrefix("/t"), "h", "/t/acme", "", "acme", true},
		{"path empty segment", tenant.FromPathPrefix("/t/"), "h", "/t//x", "", "", false},
		{"path other prefix", tenant.FromPathPrefix("/t/"), "h", "/tx/acme", "", "", false},
		{"first of none", tenant.FirstOf(), "h", "/", "", "", false},
		{"query", tenant.FromQuery("tenant"), "h", "/x?tenant=acme", "", "acme", true},
		{"empty query", tenant.FromQuery("tenant"), "h", "/x?tenant=", "", "", false},
		{"other query", tenant.FromQuery("tenant"), "h", "/x?t=acme", "", "", false},
		{"cookie", tenant.FromCookie("tenant"), "h", "/", "", "globex", true},
		{"no cookie", tenant.FromCookie("other"), "h", "/", "", "", false},
		{"context", tenant.FromContextValue(boundKey{}), "h", "/", "", "initech", true},
		{"context of another key", tenant.FromContextValue("nope"), "h", "/", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest("GET", "http://h"+tc.path, nil)
			req.Host = tc.host
			if tc.header != "" {
				req.Header.Set("X-Tenant", tc.header)
			}
			req.AddCookie(&http.Cookie{Name: "tenant", Value: "globex"})
			req = req.WithContext(context.WithValue(req.Context(), boundKey{}, "initech"))
			key, ok := tc.res(req)
			if key != tc.wantKey || ok != tc.wantOK {
				t.Errorf("got %q, %v; want %q, %v", key, ok, tc.wantKey, tc.wantOK)
			}
		})
	}
}

func TestWriteProblemDefaults(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	tenant.WriteProblem(rec, tenant.Problem{Status: http.StatusConflict, Detail: "slug taken"})
	want := `{"type":"about:blank","title":"Conflict","status":409,"detail":"slug taken"}` + "\n"
	if diff := cmp.Diff(want, rec.Body.String()); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	if rec.Code != 409 || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}
