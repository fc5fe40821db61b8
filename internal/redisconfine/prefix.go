package redisconfine

import (
	"sync"
	"sync/atomic"

	"github.com/tenancykit/tenancy/tenant"
)

// PrefixCache caches a tenant's prefix by tenant ID for one client, so
// building it costs no allocation per command. It is cleared when it passes
// maxPrefixes entries.
type PrefixCache struct {
	m      sync.Map
	n      atomic.Int64
	prefix func(tenant.Tenant) string
}

const maxPrefixes = 8192

// NewPrefixCache returns the cached form of prefix, which must depend on
// the tenant's ID alone.
func NewPrefixCache(prefix func(tenant.Tenant) string) func(tenant.Tenant) string {
	return (&PrefixCache{prefix: prefix}).Prefix
}

// Prefix returns the prefix of t.
func (pc *PrefixCache) Prefix(t tenant.Tenant) string {
	if p, ok := pc.m.Load(t.ID); ok {
		return p.(string)
	}
	p := pc.prefix(t)
	if pc.n.Add(1) > maxPrefixes {
		pc.m.Clear()
		pc.n.Store(1)
	}
	pc.m.Store(t.ID, p)
	return p
}
