package tenant

import (
	"net"
	"net/http"
	"strings"
)

// A Resolver finds the tenant key (an ID or a slug, whatever the [Lookup]
// understands) in a request. It reports ok=false when the request does not
// name a tenant in the way this resolver looks for. Any func of this type is a
// custom resolver.
type Resolver func(r *http.Request) (key string, ok bool)

// FirstOf returns a Resolver that tries each resolver in order and answers with
// the first that matches.
func FirstOf(resolvers ...Resolver) Resolver {
	return func(r *http.Request) (string, bool) {
		for _, res := range resolvers {
			if key, ok := res(r); ok {
				return key, true
			}
		}
		return "", false
	}
}

// FromHeader resolves the tenant key from the named request header, e.g.
// "X-Tenant". An empty or blank header does not match.
func FromHeader(name string) Resolver {
	name = http.CanonicalHeaderKey(name)
	return func(r *http.Request) (string, bool) {
		key := strings.TrimSpace(r.Header.Get(name))
		return key, key != ""
	}
}

// FromSubdomain resolves the tenant key from the single DNS label directly
// below baseDomain: with baseDomain "example.com", the host
// "acme.example.com:8080" resolves to "acme". The base domain itself, hosts
// outside it and deeper names ("a.b.example.com") do not match. Host
// comparison ignores case and a trailing dot.
func FromSubdomain(baseDomain string) Resolver {
	suffix := "." + strings.Trim(strings.ToLower(baseDomain), ".")
	return func(r *http.Request) (string, bool) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.ToLower(host), ".")
		label, ok := strings.CutSuffix(host, suffix)
		if !ok || label == "" || strings.Contains(label, ".") {
			return "", false
		}
		return label, true
	}
}

// FromPathPrefix resolves the tenant key from the path segment that follows
// prefix: with prefix "/t/", the path "/t/acme/projects" resolves to "acme".
// The path is left as it is, so routes include the segment, e.g.
// "GET /t/{tenant}/projects". A prefix that does not end in "/" gets one.
func FromPathPrefix(prefix string) Resolver {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return func(r *http.Request) (string, bool) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok {
			return "", false
		}
		key, _, _ := strings.Cut(rest, "/")
		return key, key != ""
	}
}

// FromCookie resolves the tenant key from the named cookie. Like a header,
// a cookie is whatever the client sends: use it to name the tenant of a
// session whose credential the application verifies, not as the credential.
// An empty cookie does not match.
func FromCookie(name string) Resolver {
	return func(r *http.Request) (string, bool) {
		c, err := r.Cookie(name)
		if err != nil {
			return "", false
		}
		key := strings.TrimSpace(c.Value)
		return key, key != ""
	}
}

// FromQuery resolves the tenant key from the named query parameter
// ("?tenant=acme"). It is the weakest of the resolvers: query strings end up
// in access logs, browser history and Referer headers, and links carrying
// them are shared. Prefer a header, the subdomain or a verified credential.
// An empty parameter does not match.
func FromQuery(name string) Resolver {
	return func(r *http.Request) (string, bool) {
		key := strings.TrimSpace(r.URL.Query().Get(name))
		return key, key != ""
	}
}

// FromContextValue resolves the tenant key that earlier middleware stored in the
// request's context under ctxKey: the way to take the tenant from a verified
// credential (a JWT claim, a session, an API key) that an authentication
// middleware checked first. A missing or empty value does not match.
func FromContextValue(ctxKey any) Resolver {
	return func(r *http.Request) (string, bool) {
		key, _ := r.Context().Value(ctxKey).(string)
		return key, key != ""
	}
}
