package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
)

// Lookup finds the tenant a request key names. The provision registry
// implements it; wrap it in a [Cache] so a request does not cost a query.
//
// LookupTenant returns [ErrNotFound] when no tenant answers to key and
// [ErrSuspended] when the tenant may not be served; any other error is taken
// as the lookup itself failing.
type Lookup interface {
	LookupTenant(ctx context.Context, key string) (Tenant, error)
}

// LookupFunc adapts a function to the [Lookup] interface.
type LookupFunc func(ctx context.Context, key string) (Tenant, error)

// LookupTenant calls f(ctx, key).
func (f LookupFunc) LookupTenant(ctx context.Context, key string) (Tenant, error) {
	return f(ctx, key)
}

// MiddlewareConfig configures [Middleware].
type MiddlewareConfig struct {
	// Resolve finds the tenant key in a request; combine several with
	// [FirstOf]. Required.
	Resolve Resolver
	// Lookup turns the key into a Tenant. Required.
	Lookup Lookup
	// ExemptPaths are served without a tenant, e.g. "/health". A path that
	// ends in "/" exempts its whole subtree, as in http.ServeMux patterns.
	// Defaults to none.
	ExemptPaths []string
	// Logger receives the lookup failures that clients see only as 503.
	// Defaults to slog.Default().
	Logger *slog.Logger
}

// ErrInvalidConfig is returned by [Middleware] when its configuration is
// incomplete; the message names the field.
var ErrInvalidConfig = errors.New("tenant: invalid configuration")

// Middleware returns net/http middleware that resolves the request's tenant
// and puts it in the request context (read it with [FromContext] or
// [Require]). Requests it cannot serve get an RFC 9457
// application/problem+json response and never reach the next handler:
//
//   - no tenant key, or a key that is not a valid ID or slug: 400 or 404
//   - unknown tenant ([ErrNotFound]): 404
//   - suspended tenant ([ErrSuspended]): 403
//   - the lookup failed: 503, with the cause logged, never sent
func Middleware(cfg MiddlewareConfig) (func(http.Handler) http.Handler, error) {
	if cfg.Resolve == nil {
		return nil, fmt.Errorf("%w: MiddlewareConfig.Resolve is nil; set it to e.g. tenant.FromHeader(\"X-Tenant\")", ErrInvalidConfig)
	}
	if cfg.Lookup == nil {
		return nil, fmt.Errorf("%w: MiddlewareConfig.Lookup is nil; set it to the tenant registry", ErrInvalidConfig)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	exempt := exemptMatcher(cfg.ExemptPaths)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if exempt(r.URL.Path) {
				next.ServeHTTP(w, r)
				return
			}
			key, ok := cfg.Resolve(r)
			if !ok {
				WriteProblem(w, Problem{Status: http.StatusBadRequest, Detail: "the request does not name a tenant", Instance: r.URL.Path})
				return
			}
			// Every valid slug is also a valid ID, so a key that is not a valid
			// ID cannot name a tenant: answer without asking the registry.
			if ValidateID(key) != nil {
				WriteProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such tenant", Instance: r.URL.Path})
				return
			}
			t, err := cfg.Lookup.LookupTenant(r.Context(), key)
			if err == nil {
				err = t.Validate()
			}
			switch {
			case err == nil:
				next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), t)))
			case errors.Is(err, ErrNotFound):
				WriteProblem(w, Problem{Status: http.StatusNotFound, Detail: "no such tenant", Instance: r.URL.Path})
			case errors.Is(err, ErrSuspended):
				WriteProblem(w, Problem{Status: http.StatusForbidden, Detail: "the tenant is suspended", Instance: r.URL.Path})
			default:
				logger.ErrorContext(r.Context(), "tenant lookup failed", slog.String("key", key), slog.Any("error", err))
				WriteProblem(w, Problem{Status: http.StatusServiceUnavailable, Detail: "the tenant could not be resolved; try again later", Instance: r.URL.Path})
			}
		})
	}, nil
}

func exemptMatcher(paths []string) func(string) bool {
	if len(paths) == 0 {
		return func(string) bool { return false }
	}
	exact := make(map[string]bool, len(paths))
	var subtrees []string
	for _, p := range paths {
		if strings.HasSuffix(p, "/") {
			subtrees = append(subtrees, p)
		} else {
			exact[p] = true
		}
	}
	return func(p string) bool {
		// Match on the cleaned path so "/health/../orders" is not exempt.
		p = path.Clean(p)
		if exact[p] {
			return true
		}
		for _, s := range subtrees {
			if strings.HasPrefix(p+"/", s) {
				return true
			}
		}
		return false
	}
}
