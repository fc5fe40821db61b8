package tenant_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/tenancykit/tenancy/tenant"
)

func ExampleNew() {
	t, err := tenant.New("0b7f1c8e-8d5e-4c62-9a8e-2f2f0f6e4a11", "acme")
	fmt.Println(t.Slug, err)

	_, err = tenant.New("42", "Acme Corp")
	fmt.Println(errors.Is(err, tenant.ErrInvalidSlug))
	fmt.Println(err)
	// Output:
	// acme <nil>
	// true
	// tenant: invalid slug "Acme Corp": must start with a lowercase letter a-z (allowed: a lowercase letter, then lowercase letters, digits or _, at most 48 bytes, not a reserved word)
}

func ExampleRequire() {
	ctx := tenant.NewContext(context.Background(), tenant.Tenant{ID: "42", Slug: "acme"})
	t, err := tenant.Require(ctx)
	fmt.Println(t.Slug, err)

	_, err = tenant.Require(context.Background())
	fmt.Println(err)
	// Output:
	// acme <nil>
	// tenant: no tenant in context
}

func ExampleMiddleware() {
	registry := tenant.LookupFunc(func(_ context.Context, key string) (tenant.Tenant, error) {
		switch key {
		case "acme":
			return tenant.Tenant{ID: "42", Slug: "acme"}, nil
		case "initech":
			return tenant.Tenant{}, tenant.ErrSuspended
		}
		return tenant.Tenant{}, tenant.ErrNotFound
	})
	mw, err := tenant.Middleware(tenant.MiddlewareConfig{
		Resolve:     tenant.FirstOf(tenant.FromHeader("X-Tenant"), tenant.FromSubdomain("example.com")),
		Lookup:      tenant.NewCache(registry, tenant.CacheConfig{}),
		ExemptPaths: []string{"/health"},
	})
	if err != nil {
		panic(err)
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, _ := tenant.FromContext(r.Context())
		fmt.Fprintf(w, "hello %s", t.Slug)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, key := range []string{"acme", "initech", "nobody", ""} {
		req, _ := http.NewRequest("GET", srv.URL+"/projects", nil)
		req.Header.Set("X-Tenant", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%q: %d %s\n", key, resp.StatusCode, bytes.TrimSpace(body))
	}
	// Output:
	// "acme": 200 hello acme
	// "initech": 403 {"type":"about:blank","title":"Forbidden","status":403,"detail":"the tenant is suspended","instance":"/projects"}
	// "nobody": 404 {"type":"about:blank","title":"Not Found","status":404,"detail":"no such tenant","instance":"/projects"}
	// "": 400 {"type":"about:blank","title":"Bad Request","status":400,"detail":"the request does not name a tenant","instance":"/projects"}
}

func ExampleNewLogHandler() {
	log := slog.New(tenant.NewLogHandler(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keep the example's output stable
			}
			return a
		},
	})))
	ctx := tenant.NewContext(context.Background(), tenant.Tenant{ID: "42", Slug: "acme"})
	log.InfoContext(ctx, "project created", "project", "apollo")
	// Output:
	// level=INFO msg="project created" project=apollo tenant_id=42 tenant_slug=acme
}
