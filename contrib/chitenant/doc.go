// Package chitenant shows, and tests, that chi needs no adapter: chi's
// middleware is net/http middleware, so tenant.Middleware goes straight
// into Use, and handlers pass r.Context() on.
//
//	r := chi.NewRouter()
//	mw, err := tenant.Middleware(tenant.MiddlewareConfig{Resolve: tenant.FromHeader("X-Tenant"), Lookup: cache})
//	r.Use(mw)
//	r.Get("/notes", func(w http.ResponseWriter, r *http.Request) { rows, err := pool.Query(r.Context(), "SELECT body FROM notes") ... })
package chitenant
