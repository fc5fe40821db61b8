package main

import (
	"context"
	"net/http"

	"github.com/tenancykit/tenancy/tenant"
)

// The request log line is written outside the tenant middleware, so the
// middleware's inner side reports the tenant back through a probe in the
// request context.
type probeKey struct{}

func contextWithProbe(ctx context.Context, seen *tenant.Tenant) context.Context {
	return context.WithValue(ctx, probeKey{}, seen)
}

func recordTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen, ok := r.Context().Value(probeKey{}).(*tenant.Tenant); ok {
			*seen, _ = tenant.FromContext(r.Context())
		}
		next.ServeHTTP(w, r)
	})
}
