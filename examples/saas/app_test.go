package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const adminToken, tokenSecret = "test-admin-token", "test-token-secret"

// tokens holds the credential of every tenant the tests created through the
// admin API, by slug and by ID; call sends it with the tenant's requests.
var tokens sync.Map

func newServer(t *testing.T, rc rueidis.Client) *httptest.Server {
	t.Helper()
	return newServerLimit(t, rc, 0)
}

func newServerLimit(t *testing.T, rc rueidis.Client, limit int) *httptest.Server {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	app, err := NewApp(context.Background(), Config{
		OwnerURL: pg.OwnerURL, AppURL: pg.AppURL, AppRole: pg.AppRole, Redis: rc,
		AdminToken: adminToken, Logger: slog.New(slog.DiscardHandler), RateLimit: limit,
		TokenSecret: []byte(tokenSecret),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	srv := httptest.NewServer(app.Handler())
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func call(t *testing.T, srv *httptest.Server, method, path, tenantKey, body string, admin bool) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tenantKey != "" {
		req.Header.Set("X-Tenant", tenantKey)
		if tok, ok := tokens.Load(tenantKey); ok {
			req.Header.Set("Authorization", "Bearer "+tok.(string))
		}
	}
	if admin {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if method == "POST" && path == "/api/v1/tenants" && resp.StatusCode == 201 {
		var tj tenantJSON
		if err := json.Unmarshal(b, &tj); err == nil && tj.Token != "" {
			tokens.Store(tj.Slug, tj.Token)
			tokens.Store(tj.ID, tj.Token)
		}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("status %d body %s: %v", r.status, r.body, err)
	}
}

func (r response) problem(t *testing.T, status int) tenant.Problem {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %d %q %s, want %d problem+json", r.status, r.header.Get("Content-Type"), r.body, status)
	}
	var p tenant.Problem
	r.decode(t, &p)
	return p
}

func TestSaaSEndToEnd(t *testing.T) {
	raw := testenv.RedisClient(t)
	srv := newServer(t, raw)
	slugA, slugB := testenv.NewTenant("shop").Slug, testenv.NewTenant("shop").Slug
	var a, b tenantJSON
	call(t, srv, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q,"name":"A"}`, slugA), true).decode(t, &a)
	call(t, srv, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q,"name":"B"}`, slugB), true).decode(t, &b)
	if a.Status != "active" || b.Status != "active" {
		t.Fatalf("created %+v %+v", a, b)
	}
	if r := call(t, srv, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q}`, slugA), true); r.status != 409 {
		t.Errorf("duplicate tenant: %d", r.status)
	}
	if r := call(t, srv, "GET", "/api/v1/tenants", "", "", false); r.status != 401 {
		t.Errorf("admin without token: %d", r.status)
	}

	// The same-named project in each tenant, with a note only its tenant may see.
	ids := map[string]int64{}
	for _, s := range []string{slugA, slugB} {
		var p project
		r := call(t, srv, "POST", "/api/v1/projects", s, `{"name":"apollo"}`, false)
		if r.status != 201 {
			t.Fatalf("create project: %d %s", r.status, r.body)
		}
		r.decode(t, &p)
		ids[s] = p.ID
		if r := call(t, srv, "POST", fmt.Sprintf("/api/v1/projects/%d/notes", p.ID), s, `{"body":"secret of `+s+`"}`, false); r.status != 201 {
			t.Fatalf("create note: %d %s", r.status, r.body)
		}
	}
	for _, s := range []string{slugA, slugB} {
		var projects []project
		call(t, srv, "GET", "/api/v1/projects", s, "", false).decode(t, &projects)
		if len(projects) != 1 || projects[0].Name != "apollo" {
			t.Errorf("%s projects: %+v", s, projects)
		}
		var notes []note
		call(t, srv, "GET", fmt.Sprintf("/api/v1/projects/%d/notes", ids[s]), s, "", false).decode(t, &notes)
		if len(notes) != 1 || notes[0].Body != "secret of "+s {
			t.Errorf("%s notes: %+v", s, notes)
		}
		// Cached per tenant.
		path := fmt.Sprintf("/api/v1/projects/%d", ids[s])
		if r := call(t, srv, "GET", path, s, "", false); r.status != 200 || r.header.Get("X-Cache") != "miss" {
			t.Errorf("%s first get: %d %s", s, r.status, r.header.Get("X-Cache"))
		}
		if r := call(t, srv, "GET", path, s, "", false); r.status != 200 || r.header.Get("X-Cache") != "hit" {
			t.Errorf("%s second get: %d %s", s, r.status, r.header.Get("X-Cache"))
		}
	}

	// Failures, as problem+json.
	call(t, srv, "GET", "/api/v1/projects", "", "", false).problem(t, 401)
	call(t, srv, "GET", "/api/v1/projects", "nobody_here", "", false).problem(t, 401)
	call(t, srv, "POST", "/api/v1/projects", slugA, `{"name":`, false).problem(t, 400)
	call(t, srv, "POST", "/api/v1/projects", slugA, `{"title":"x"}`, false).problem(t, 400)
	call(t, srv, "POST", "/api/v1/projects", slugA, `{"name":"apollo"}`, false).problem(t, 409)
	if r := call(t, srv, "POST", "/api/v1/tenants/"+slugB+"/suspend", "", "", true); r.status != 204 {
		t.Fatalf("suspend: %d %s", r.status, r.body)
	}
	call(t, srv, "GET", "/api/v1/projects", slugB, "", false).problem(t, 403)
	if r := call(t, srv, "POST", "/api/v1/tenants/"+slugB+"/resume", "", "", true); r.status != 204 {
		t.Fatalf("resume: %d", r.status)
	}
	if r := call(t, srv, "GET", "/api/v1/projects", slugB, "", false); r.status != 200 {
		t.Errorf("after resume: %d", r.status)
	}

	// Delete A: its schema and cache keys go, B stays whole.
	keys := func(id string) []string {
		k, err := raw.Do(context.Background(), raw.B().Keys().Pattern(redistenant.Prefix(tenant.Tenant{ID: id})+"project:*").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if len(keys(a.ID)) != 1 || len(keys(b.ID)) != 1 {
		t.Fatalf("cache keys before delete: %v %v", keys(a.ID), keys(b.ID))
	}
	if r := call(t, srv, "DELETE", "/api/v1/tenants/"+slugA, "", "", true); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	call(t, srv, "GET", "/api/v1/projects", slugA, "", false).problem(t, 404)
	if k := keys(a.ID); len(k) != 0 {
		t.Errorf("A's cache keys survived: %v", k)
	}
	var exists bool
	if err := testenv.PostgreSQL(t).OwnerPool(t).QueryRow(context.Background(), "SELECT to_regnamespace($1) IS NOT NULL", a.Schema).Scan(&exists); err != nil || exists {
		t.Errorf("A's schema survived (%v)", err)
	}
	var projects []project
	call(t, srv, "GET", "/api/v1/projects", slugB, "", false).decode(t, &projects)
	if diff := cmp.Diff([]string{"apollo"}, []string{projects[0].Name}); diff != "" || len(keys(b.ID)) != 1 {
		t.Errorf("B after A's delete: %v, keys %v", projects, keys(b.ID))
	}
	if r := call(t, srv, "GET", "/health", "", "", false); r.status != 200 {
		t.Errorf("health: %d", r.status)
	}
}

// startRedis starts a Redis of its own for a test that stops it, and
// returns a client of it and its process.
func startRedis(t *testing.T) (rueidis.Client, *exec.Cmd) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed: cannot start a Redis to stop")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var rc rueidis.Client
	for i := 0; ; i++ {
		rc, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{fmt.Sprintf("127.0.0.1:%d", port)}})
		if err == nil {
			break
		}
		if i == 50 {
			t.Fatalf("redis-server did not start: %v\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(rc.Close)
	return rc, cmd
}

func TestReadinessFollowsRedis(t *testing.T) {
	rc, cmd := startRedis(t)
	srv := newServer(t, rc)
	if r := call(t, srv, "GET", "/health/ready", "", "", false); r.status != 200 {
		t.Fatalf("ready with Redis up: %d %s", r.status, r.body)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	p := call(t, srv, "GET", "/health/ready", "", "", false).problem(t, 503)
	if !strings.Contains(p.Detail, "Redis") {
		t.Errorf("readiness problem %q does not name Redis", p.Detail)
	}
	if r := call(t, srv, "GET", "/health", "", "", false); r.status != 200 {
		t.Errorf("liveness must not depend on Redis: %d", r.status)
	}
}

func TestRateLimitPerTenant(t *testing.T) {
	srv := newServerLimit(t, testenv.RedisClient(t), 5)
	busy, calm := testenv.NewTenant("busy").Slug, testenv.NewTenant("calm").Slug
	for _, s := range []string{busy, calm} {
		if r := call(t, srv, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q}`, s), true); r.status != 201 {
			t.Fatalf("create %s: %d %s", s, r.status, r.body)
		}
	}
	limited := 0
	for range 12 { // split over two minutes at worst, one of them still sees 6 > 5
		if r := call(t, srv, "GET", "/api/v1/projects", busy, "", false); r.status == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Error("12 requests against a limit of 5 were all served")
	}
	if r := call(t, srv, "GET", "/api/v1/projects", calm, "", false); r.status != 200 {
		t.Errorf("another tenant is limited too: %d", r.status)
	}
}

// TestSuspensionReachesEveryInstance: two instances of the service on one
// database, each with its own cache; a suspension made through one is
// refused by the other within a second (the registry watch), not at the end
// of the cache's TTL.
func TestSuspensionReachesEveryInstance(t *testing.T) {
	raw := testenv.RedisClient(t)
	one, two := newServer(t, raw), newServer(t, raw)
	s := testenv.NewTenant("twice").Slug
	if r := call(t, one, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q}`, s), true); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := call(t, two, "GET", "/api/v1/projects", s, "", false); r.status != 200 {
		t.Fatalf("instance two before: %d %s", r.status, r.body)
	}
	if r := call(t, one, "POST", "/api/v1/tenants/"+s+"/suspend", "", "", true); r.status >= 300 {
		t.Fatalf("suspend: %d %s", r.status, r.body)
	}
	start := time.Now()
	for {
		r := call(t, two, "GET", "/api/v1/projects", s, "", false)
		if r.status == 403 {
			t.Logf("instance two refused the suspended tenant after %v", time.Since(start))
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("instance two still answers %d a second after the suspension", r.status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRedisCutFallsBack: a Redis that stops answering (SIGSTOP: the
// connection stays open, no reply comes) costs a cached read a bounded
// wait, then it is served from PostgreSQL; writes work too. Without the
// per-call timeouts these requests hung past the client's 5 s.
func TestRedisCutFallsBack(t *testing.T) {
	rc, cmd := startRedis(t)
	srv := newServer(t, rc)
	s := testenv.NewTenant("cut").Slug
	call(t, srv, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q}`, s), true).decode(t, new(tenantJSON))
	var p project
	call(t, srv, "POST", "/api/v1/projects", s, `{"name":"kept"}`, false).decode(t, &p)
	path := fmt.Sprintf("/api/v1/projects/%d", p.ID)
	if r := call(t, srv, "GET", path, s, "", false); r.status != 200 {
		t.Fatalf("read with Redis up: %d %s", r.status, r.body)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, c := range []struct{ method, path, body string }{{"GET", path, ""}, {"PUT", path, `{"name":"renamed"}`}, {"GET", "/api/v1/projects", ""}} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("X-Tenant", s)
		tok, _ := tokens.Load(s)
		req.Header.Set("Authorization", "Bearer "+tok.(string))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s with Redis stopped: %v", c.method, c.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s %s with Redis stopped: %d", c.method, c.path, resp.StatusCode)
		}
	}
	// Delete purges the tenant's keys: with Redis stopped it gives up in
	// bounded time (503, resumable), and once Redis is back the same
	// DELETE finishes the job.
	req, _ := http.NewRequest("DELETE", srv.URL+"/api/v1/tenants/"+s, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("DELETE with Redis stopped: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("DELETE with Redis stopped: %d, want 503", resp.StatusCode)
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if r := call(t, srv, "DELETE", "/api/v1/tenants/"+s, "", "", true); r.status != 204 {
		t.Errorf("DELETE once Redis is back: %d %s", r.status, r.body)
	}
	if r := call(t, srv, "GET", "/api/v1/tenants/"+s, "", "", true); r.status != 404 {
		t.Errorf("the deleted tenant: %d %s", r.status, r.body)
	}
}

// TestBadInputIsA400Problem: every malformed request is a 400 (or 404/405)
// application/problem+json, never a 500 or text/plain.
func TestBadInputIsA400Problem(t *testing.T) {
	srv := newServer(t, testenv.RedisClient(t))
	s := testenv.NewTenant("bad").Slug
	call(t, srv, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q}`, s), true).decode(t, new(tenantJSON))
	var p project
	call(t, srv, "POST", "/api/v1/projects", s, `{"name":"ok"}`, false).decode(t, &p)
	notes := fmt.Sprintf("/api/v1/projects/%d/notes", p.ID)
	for _, c := range []struct {
		method, path, tenantKey, body string
		admin                         bool
		status                        int
	}{
		{"POST", "/api/v1/projects", s, `{"name":"a\u0000b"}`, false, 400},
		{"POST", "/api/v1/projects", s, `{"name":"x"} trailing`, false, 400},
		{"POST", "/api/v1/projects", s, `{"name":"x"}{"name":"y"}`, false, 400},
		{"POST", "/api/v1/projects", s, `{"name":"` + strings.Repeat("n", 201) + `"}`, false, 400},
		{"POST", notes, s, `{"body":"` + strings.Repeat("b", 10001) + `"}`, false, 400},
		{"POST", notes, s, `{"body":"\u0000"}`, false, 400},
		{"POST", "/api/v1/tenants", "", `{"slug":"` + testenv.NewTenant("nul").Slug + `","name":"n\u0000"}`, true, 400},
		{"POST", "/api/v1/tenants", "", `{"slug":"` + testenv.NewTenant("long").Slug + `","name":"` + strings.Repeat("x", 201) + `"}`, true, 400},
		{"GET", "/api/v1/nowhere", s, "", false, 404},
		{"PATCH", "/api/v1/projects", s, "", false, 405},
		{"GET", "/nowhere", "", "", false, 404},
	} {
		r := call(t, srv, c.method, c.path, c.tenantKey, c.body, c.admin)
		if r.status != c.status || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s %.40q: %d %q %.200s, want %d problem+json", c.method, c.path, c.body, r.status, r.header.Get("Content-Type"), r.body, c.status)
		}
		if c.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
	}
}

// TestAdminToken: the Authorization scheme is case-insensitive; a wrong
// token of the same length is refused.
func TestAdminToken(t *testing.T) {
	srv := newServer(t, testenv.RedisClient(t))
	for auth, want := range map[string]int{
		"Bearer " + adminToken:                           200,
		"bearer " + adminToken:                           200,
		"BEARER " + adminToken:                           200,
		"Bearer " + strings.Repeat("x", len(adminToken)): 401,
		"Basic " + adminToken:                            401,
		"Bearer":                                         401,
		"":                                               401,
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/tenants", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Authorization %q: %d, want %d", auth, resp.StatusCode, want)
		}
	}
}

// TestTenantBinding: the tenant is the one the caller's token was issued
// for. No token or a forged one is 401; a token of A naming B (X-Tenant) is
// 403; A's token reads A's data, with or without naming A. The header alone
// works only where the operator trusts it (internal hops).
func TestTenantBinding(t *testing.T) {
	srv := newServer(t, testenv.RedisClient(t))
	slugA, slugB := testenv.NewTenant("bind").Slug, testenv.NewTenant("bind").Slug
	var a, b tenantJSON
	call(t, srv, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q}`, slugA), true).decode(t, &a)
	call(t, srv, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q}`, slugB), true).decode(t, &b)
	if a.Token == "" || a.Token == b.Token {
		t.Fatalf("tokens %q %q", a.Token, b.Token)
	}
	call(t, srv, "POST", "/api/v1/projects", slugA, `{"name":"a-only"}`, false).decode(t, new(project))
	do := func(auth, named string) response {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/projects", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if named != "" {
			req.Header.Set("X-Tenant", named)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, header: resp.Header, body: body}
	}
	sigB := b.Token[strings.LastIndexByte(b.Token, '.')+1:]
	for _, c := range []struct {
		name, auth, named string
		status            int
	}{
		{"no token", "", slugA, 401},
		{"no token, no name", "", "", 401},
		{"forged: A's ID with B's signature", "Bearer " + a.ID + "." + sigB, "", 401},
		{"garbage", "Bearer nonsense", "", 401},
		{"admin token is not a tenant token", "Bearer " + adminToken, "", 401},
		{"A's token naming B by slug", "Bearer " + a.Token, slugB, 403},
		{"A's token naming B by ID", "Bearer " + a.Token, b.ID, 403},
		{"A's token", "Bearer " + a.Token, "", 200},
		{"A's token naming A by slug", "Bearer " + a.Token, slugA, 200},
		{"A's token naming A by ID", "bearer " + a.Token, a.ID, 200},
		{"B's token", "Bearer " + b.Token, "", 200},
	} {
		r := do(c.auth, c.named)
		if r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
			continue
		}
		if c.status != 200 {
			r.problem(t, c.status)
			continue
		}
		var got []project
		r.decode(t, &got)
		wantA := strings.HasPrefix(c.name, "A's")
		if (len(got) == 1 && got[0].Name == "a-only") != wantA || (!wantA && len(got) != 0) {
			t.Errorf("%s: projects %+v", c.name, got)
		}
	}

	// Internal hops: a server that trusts the header.
	pg := testenv.PostgreSQL(t)
	app, err := NewApp(context.Background(), Config{OwnerURL: pg.OwnerURL, AppURL: pg.AppURL, AppRole: pg.AppRole, Redis: testenv.RedisClient(t),
		AdminToken: adminToken, Logger: slog.New(slog.DiscardHandler), TokenSecret: []byte(tokenSecret), TrustTenantHeader: true})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	internal := httptest.NewServer(app.Handler())
	defer internal.Close()
	req, _ := http.NewRequest("GET", internal.URL+"/api/v1/projects", nil)
	req.Header.Set("X-Tenant", slugA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("TrustTenantHeader: X-Tenant alone answered %d", resp.StatusCode)
	}
}
