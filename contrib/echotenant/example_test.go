package echotenant_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/labstack/echo/v4"
	"github.com/tenancykit/tenancy/contrib/echotenant"
	"github.com/tenancykit/tenancy/tenant"
)

func ExampleMiddleware() {
	acme, _ := tenant.New("7f6c2a34-0d6e-4c1b-9c56-3f2b8f0e2a11", "acme")
	lookup := tenant.LookupFunc(func(_ context.Context, key string) (tenant.Tenant, error) {
		if key == acme.Slug {
			return acme, nil
		}
		return tenant.Tenant{}, tenant.ErrNotFound
	})
	e := echo.New()
	mw, err := echotenant.Middleware(tenant.MiddlewareConfig{Resolve: tenant.FromHeader("X-Tenant"), Lookup: lookup})
	if err != nil {
		panic(err)
	}
	e.Use(mw)
	e.GET("/whoami", func(c echo.Context) error {
		t, _ := tenant.FromContext(echotenant.Context(c)) // what the pool sees
		return c.String(http.StatusOK, t.Slug)
	})
	for _, key := range []string{"acme", ""} {
		req := httptest.NewRequest(http.MethodGet, "/whoami", nil)
		if key != "" {
			req.Header.Set("X-Tenant", key)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	}
	// Output:
	// 200 text/plain; charset=UTF-8
	// 400 application/problem+json
}
