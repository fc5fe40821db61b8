package gintenant_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gin-gonic/gin"
	"github.com/tenancykit/tenancy/contrib/gintenant"
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
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.ContextWithFallback = true // a *gin.Context then carries the request's tenant
	mw, err := gintenant.Middleware(tenant.MiddlewareConfig{Resolve: tenant.FromHeader("X-Tenant"), Lookup: lookup})
	if err != nil {
		panic(err)
	}
	r.Use(mw)
	r.GET("/whoami", func(c *gin.Context) {
		t, _ := tenant.FromContext(c) // what pool.Query(c, ...) sees
		c.String(http.StatusOK, t.Slug)
	})
	for _, key := range []string{"acme", "initech"} {
		req := httptest.NewRequest(http.MethodGet, "/whoami", nil)
		req.Header.Set("X-Tenant", key)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Body.String()[:min(4, rec.Body.Len())])
	}
	// Output:
	// 200 acme
	// 404 {"ty
}
