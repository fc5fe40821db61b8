// Package echotenant resolves the tenant of each Echo request, with
// tenant.Middleware's rules and responses.
//
// An echo.Context is not a context.Context: handlers pass
// c.Request().Context() (or [Context](c)) to the pool and the Redis client.
//
//	e := echo.New()
//	mw, err := echotenant.Middleware(tenant.MiddlewareConfig{Resolve: tenant.FromHeader("X-Tenant"), Lookup: cache})
//	e.Use(mw)
//	e.GET("/notes", func(c echo.Context) error { rows, err := pool.Query(echotenant.Context(c), "SELECT body FROM notes") ... })
package echotenant

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/tenancykit/tenancy/tenant"
)

// Middleware returns Echo middleware that resolves the request's tenant as
// tenant.Middleware(cfg) does (its errors, and the same problem+json
// responses for requests it cannot serve, which never reach the handler).
func Middleware(cfg tenant.MiddlewareConfig) (echo.MiddlewareFunc, error) {
	mw, err := tenant.Middleware(cfg)
	if err != nil {
		return nil, err
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			var herr error
			mw(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				c.SetRequest(r)
				herr = next(c)
			})).ServeHTTP(c.Response(), c.Request())
			return herr
		}
	}, nil
}

// Context returns the request's context, which carries the tenant.
func Context(c echo.Context) context.Context { return c.Request().Context() }
