package goredistenant

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/internal/redisconfine"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// Config configures [New]. Zero fields mean their documented defaults.
type Config struct {
	// Prefix returns the namespace of a tenant's keys, channels and
	// patterns. It must be injective and depend on the tenant's ID alone.
	// Defaults to [redistenant.Prefix], "t:{<id>}:", so a tenant's keys are
	// the same whether it is served through go-redis or rueidis.
	Prefix func(tenant.Tenant) string
}

// Client is a go-redis client whose every command is confined to the
// tenant of its context. It embeds the *redis.Client it was made from, so
// every go-redis method works on it, and that *redis.Client itself is
// confined too (the hook is added to it): pass c.Client to code that takes
// a *redis.Client. Client replaces the methods that go-redis runs past its
// hooks: Subscribe, PSubscribe and SSubscribe (which return this package's
// [PubSub]) and Watch.
type Client struct {
	*redis.Client
	prefix func(tenant.Tenant) string
}

// New adds the confining hook to rdb and returns the Client that wraps it.
// Call it before rdb serves any command: connections rdb dialed before are
// not guarded (see the package doc), and a redis.Conn or Tx made before
// carries no hook.
func New(rdb *redis.Client, cfg Config) *Client {
	p := cfg.Prefix
	if p == nil {
		p = redistenant.Prefix
	}
	c := &Client{Client: rdb, prefix: redisconfine.NewPrefixCache(p)}
	rdb.AddHook(&hook{prefix: c.prefix, handshake: newHandshake(rdb.Options())})
	return c
}

// Watch runs fn in an optimistic transaction, as go-redis's Watch does: keys
// are watched (in the tenant's namespace) on a connection of the
// transaction's own, and fn's TxPipelined runs MULTI ... EXEC there, failing
// with redis.TxFailedErr when a watched key changed. The keys are watched
// only here: Tx.Watch and Tx.Unwatch inside fn are refused like WATCH
// anywhere else, and the transaction's connection goes back to the pool
// unwatched. go-redis's own Watch (c.Client.Watch) is refused with
// [redistenant.ErrConnectionState].
func (c *Client) Watch(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error {
	if _, err := tenant.Require(ctx); err != nil {
		return err
	}
	return c.Client.Watch(context.WithValue(ctx, dedicatedKey, true), fn, keys...)
}

// Subscribe subscribes to channels in the context tenant's namespace and
// returns the subscription, bound to that tenant. With no channels it makes
// an empty subscription, as go-redis's Subscribe does.
func (c *Client) Subscribe(ctx context.Context, channels ...string) *PubSub {
	return c.pubSub(ctx, (*PubSub).Subscribe, channels)
}

// PSubscribe subscribes to patterns over the context tenant's channels.
func (c *Client) PSubscribe(ctx context.Context, patterns ...string) *PubSub {
	return c.pubSub(ctx, (*PubSub).PSubscribe, patterns)
}

// SSubscribe subscribes to shard channels in the context tenant's namespace.
func (c *Client) SSubscribe(ctx context.Context, channels ...string) *PubSub {
	return c.pubSub(ctx, (*PubSub).SSubscribe, channels)
}

func (c *Client) pubSub(ctx context.Context, sub func(*PubSub, context.Context, ...string) error, names []string) *PubSub {
	t, err := tenant.Require(ctx)
	if err != nil {
		return &PubSub{err: err}
	}
	p := &PubSub{tenant: t, prefix: c.prefix(t)}
	p.ps = c.Client.Subscribe(p.mark(ctx))
	if len(names) > 0 {
		p.err = sub(p, ctx, names...)
	}
	return p
}

// Key returns k in the namespace of the context's tenant, for code that
// builds key names the hook does not see (a script's body, a key stored as
// a value).
func (c *Client) Key(ctx context.Context, k string) (string, error) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return "", err
	}
	return c.prefix(t) + k, nil
}

// Strip returns key without the context tenant's prefix, for replies that
// hold key names the hook does not strip (see the package doc). ok is false
// when key is not in the tenant's namespace.
func (c *Client) Strip(ctx context.Context, key string) (string, bool) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return "", false
	}
	return strings.CutPrefix(key, c.prefix(t))
}
