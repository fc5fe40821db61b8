// Package tenant defines the tenant of a request and carries it through a
// service: the [Tenant] value with its validation rules, context helpers,
// net/http middleware that resolves the tenant of each request, a caching
// [Lookup], and a log/slog handler that stamps every log line with the tenant.
//
// It depends on the standard library only; every other package of the SDK
// builds on it.
//
// # Tenants
//
// A [Tenant] has an ID (1-64 bytes of [A-Za-z0-9_-], stored in every tenant
// row and used in Redis key prefixes) and a slug ([a-z][a-z0-9_]*, at most 48
// bytes, naming the tenant's PostgreSQL schema "tenant_<slug>"). The alphabets
// are chosen so that neither can break out of an SQL identifier, a Redis key
// prefix, a glob pattern or a cluster hash tag. [New], [ValidateID] and
// [ValidateSlug] return a *[ValidationError] naming the rule that failed.
//
// # Context
//
// The tenant travels in a context.Context: [NewContext] stores it,
// [FromContext] reads it, and [Require] returns [ErrNoTenant] when there is
// none. Every tenant-scoped call of the SDK fails closed that way: no tenant
// in the context never means "all tenants" or "the previous tenant".
//
// # HTTP
//
// [Middleware] resolves a key from each request with [Resolver]s
// ([FromHeader], [FromSubdomain], [FromPathPrefix], [FromCookie], [FromQuery],
// [FromContextValue] or your own, combined with [FirstOf]), looks the tenant up through a [Lookup] (usually a [Cache] in
// front of the registry) and serves the request with the tenant in its
// context. Failures are RFC 9457 problem responses: 400 when the request names
// no tenant, 404 for an unknown one, 403 for a suspended one and 503 when the
// lookup fails.
//
//	lookup := tenant.NewCache(registry, tenant.CacheConfig{})
//	mw, err := tenant.Middleware(tenant.MiddlewareConfig{
//		Resolve:     tenant.FirstOf(tenant.FromHeader("X-Tenant"), tenant.FromSubdomain("example.com")),
//		Lookup:      lookup,
//		ExemptPaths: []string{"/health", "/health/ready"},
//	})
//	if err != nil {
//		return err
//	}
//	http.ListenAndServe(":8080", mw(mux))
//
// A header, a subdomain, a cookie or a query parameter only names a tenant:
// any client can send any name. Before trusting it, bind the request to the
// tenant its verified credential was issued for — an authentication
// middleware checks the token (a JWT claim, an API key, a session) and
// stores the tenant key in the request's context, and [FromContextValue]
// resolves it; a name the client also sends must then agree with it
// (examples/saas does this with signed tenant tokens). [FromQuery] is the
// weakest: query strings end up in logs, history and Referer headers.
//
// The middleware is plain net/http, so routers mount it through their
// adapters:
//
//	r := chi.NewRouter(); r.Use(mw)                      // chi
//	g := gin.New(); g.Use(adapter.Wrap(mw))              // Gin, via github.com/gwatts/gin-adapter
//	e := echo.New(); e.Use(echo.WrapMiddleware(mw))      // Echo
//
// # Logging
//
// Wrap a slog handler in [NewLogHandler] and every record logged with a
// tenant context carries "tenant_id" and "tenant_slug".
package tenant
