// Package gintenant resolves the tenant of each Gin request, with
// tenant.Middleware's rules and responses.
//
// A *gin.Context is a context.Context, but it finds values of the request's
// context only when the engine's ContextWithFallback is set: without it,
// pool.Query(c, ...) sees no tenant. Middleware therefore puts the tenant in
// the request's context and refuses to go on (500, naming the setting) on
// an engine without ContextWithFallback, instead of letting every query
// fail with "no tenant". [Context] gives the request's context for code
// that should not depend on the setting.
//
//	r := gin.New()
//	r.ContextWithFallback = true
//	mw, err := gintenant.Middleware(tenant.MiddlewareConfig{Resolve: tenant.FromHeader("X-Tenant"), Lookup: cache})
//	r.Use(mw)
//	r.GET("/notes", func(c *gin.Context) { rows, err := pool.Query(c, "SELECT body FROM notes") ... })
package gintenant

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/tenancykit/tenancy/tenant"
)

// Middleware returns Gin middleware that resolves the request's tenant as
// tenant.Middleware(cfg) does (its errors, and the same problem+json
// responses for requests it cannot serve, which are aborted).
func Middleware(cfg tenant.MiddlewareConfig) (gin.HandlerFunc, error) {
	mw, err := tenant.Middleware(cfg)
	if err != nil {
		return nil, err
	}
	return func(c *gin.Context) {
		served := false
		mw(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			served = true
			c.Request = r
			if t, ok := tenant.FromContext(r.Context()); ok {
				if got, ok := tenant.FromContext(c); !ok || got != t {
					c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{
						"title":  "gintenant: the engine's ContextWithFallback is off",
						"detail": "set ContextWithFallback = true on the gin.Engine, so that a *gin.Context carries the request's tenant",
					})
					return
				}
			}
			c.Next()
		})).ServeHTTP(c.Writer, c.Request)
		if !served {
			c.Abort()
		}
	}, nil
}

// Context returns the request's context, which carries the tenant
// whatever the engine's settings.
func Context(c *gin.Context) context.Context { return c.Request.Context() }
