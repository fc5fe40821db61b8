package tenant

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// CacheConfig configures [NewCache].
type CacheConfig struct {
	// TTL is how long a found tenant is served from the cache. Defaults to 30s.
	TTL time.Duration
	// NegativeTTL is how long [ErrNotFound] and [ErrSuspended] answers are
	// served from the cache; keep it short so a new or resumed tenant is
	// served soon. Other errors are never cached. Defaults to 2s.
	NegativeTTL time.Duration
	// MaxEntries bounds the cache; the least recently used entry is evicted
	// first. Defaults to 10,000.
	MaxEntries int
	// Now returns the current time. Defaults to time.Now; tests set it to
	// move time without sleeping.
	Now func() time.Time
}

// Cache is a [Lookup] that remembers the answers of another Lookup, so a
// request does not cost a registry query. Concurrent misses for one key are
// coalesced into a single call of the underlying Lookup. It is safe for
// concurrent use.
type Cache struct {
	next     Lookup
	ttl      time.Duration
	negTTL   time.Duration
	max      int
	now      func() time.Time
	mu       sync.Mutex
	entries  map[string]*list.Element // of *cacheEntry
	lru      list.List                // front = most recently used
	inflight map[string]*lookupCall
	gen      uint64 // bumped by Invalidate: answers of lookups begun before are not stored
}

type cacheEntry struct {
	key     string
	tenant  Tenant
	err     error
	expires time.Time
}

type lookupCall struct {
	done   chan struct{}
	tenant Tenant
	err    error
}

// NewCache returns a Cache in front of next.
func NewCache(next Lookup, cfg CacheConfig) *Cache {
	c := &Cache{
		next:     next,
		ttl:      cfg.TTL,
		negTTL:   cfg.NegativeTTL,
		max:      cfg.MaxEntries,
		now:      cfg.Now,
		entries:  make(map[string]*list.Element),
		inflight: make(map[string]*lookupCall),
	}
	if c.ttl <= 0 {
		c.ttl = 30 * time.Second
	}
	if c.negTTL <= 0 {
		c.negTTL = 2 * time.Second
	}
	if c.max <= 0 {
		c.max = 10_000
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// LookupTenant answers from the cache when it holds a fresh entry for key and
// otherwise asks the underlying Lookup, sharing one call among concurrent
// callers of the same key.
func (c *Cache) LookupTenant(ctx context.Context, key string) (Tenant, error) {
	for {
		c.mu.Lock()
		if el, ok := c.entries[key]; ok {
			e := el.Value.(*cacheEntry)
			if c.now().Before(e.expires) {
				c.lru.MoveToFront(el)
				c.mu.Unlock()
				return e.tenant, e.err
			}
			c.removeLocked(el)
		}
		if call, ok := c.inflight[key]; ok {
			c.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return Tenant{}, ctx.Err()
			}
			// The leader's own context ended its call; ours is still alive,
			// so try again rather than fail for someone else's cancellation.
			if isContextErr(call.err) && ctx.Err() == nil {
				continue
			}
			return call.tenant, call.err
		}
		call := &lookupCall{done: make(chan struct{})}
		c.inflight[key] = call
		gen := c.gen
		c.mu.Unlock()

		call.tenant, call.err = c.next.LookupTenant(ctx, key)

		c.mu.Lock()
		delete(c.inflight, key)
		if ttl, ok := c.ttlFor(call.err); ok && gen == c.gen {
			c.storeLocked(&cacheEntry{key: key, tenant: call.tenant, err: call.err, expires: c.now().Add(ttl)})
		}
		c.mu.Unlock()
		close(call.done)
		return call.tenant, call.err
	}
}

// Invalidate drops the cached answers for key and for every other name of
// the tenant it names (a tenant cached under its slug and its ID is dropped
// under both), e.g. after the tenant was suspended, so the next lookup of
// any of its names asks the underlying Lookup. A lookup already under way
// when Invalidate runs does not store its answer.
func (c *Cache) Invalidate(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	ids := map[string]bool{key: true}
	if el, ok := c.entries[key]; ok {
		if t := el.Value.(*cacheEntry).tenant; t.ID != "" {
			ids[t.ID] = true
		}
	}
	for k, el := range c.entries {
		e := el.Value.(*cacheEntry)
		if k == key || ids[e.tenant.ID] || e.tenant.Slug == key {
			c.removeLocked(el)
		}
	}
}

// InvalidateAll drops every cached answer, e.g. when notifications of
// changes may have been missed; lookups under way do not store theirs.
func (c *Cache) InvalidateAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
	c.lru.Init()
}

// Len returns the number of cached entries, fresh or expired.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *Cache) ttlFor(err error) (time.Duration, bool) {
	switch {
	case err == nil:
		return c.ttl, true
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrSuspended):
		return c.negTTL, true
	default:
		return 0, false
	}
}

func (c *Cache) storeLocked(e *cacheEntry) {
	if el, ok := c.entries[e.key]; ok {
		c.removeLocked(el)
	}
	c.entries[e.key] = c.lru.PushFront(e)
	for len(c.entries) > c.max {
		c.removeLocked(c.lru.Back())
	}
}

func (c *Cache) removeLocked(el *list.Element) {
	delete(c.entries, el.Value.(*cacheEntry).key)
	c.lru.Remove(el)
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
