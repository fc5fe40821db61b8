package goredistenant

import (
	"context"
	"fmt"
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
	core
}

// New adds the confining hook to rdb and returns the Client that wraps it.
// Call it before rdb serves any command: connections rdb dialed before are
// not guarded (see the package doc), and a redis.Conn or Tx made before
// carries no hook.
func New(rdb *redis.Client, cfg Config) *Client {
	c := &Client{Client: rdb, core: newCore(cfg, rdb, rdb.Subscribe)}
	rdb.AddHook(&hook{prefix: c.prefix, handshake: newHandshake(rdb.Options())})
	return c
}

// ClusterClient is [Client] for a Redis Cluster: it embeds the
// *redis.ClusterClient it was made from, confined by one hook on it and one
// on each of its node clients. A tenant's keys share the slot of its hash
// tag, so every multi-key command, pipeline and transaction of one tenant
// runs on one node; SCAN and KEYS are sent to the node that holds the
// tenant's slot.
type ClusterClient struct {
	*redis.ClusterClient
	core
}

// NewCluster adds the confining hooks to rdb (its own and, through
// OnNewNode, its node clients') and returns the ClusterClient that wraps
// it. Call it before rdb serves any command: a node client made before has
// no hook.
func NewCluster(rdb *redis.ClusterClient, cfg Config) *ClusterClient {
	c := &ClusterClient{ClusterClient: rdb, core: newCore(cfg, rdb, rdb.Subscribe)}
	hs := newClusterHandshake(rdb.Options())
	rdb.AddHook(&hook{prefix: c.prefix, handshake: hs, cluster: true})
	rdb.OnNewNode(func(n *redis.Client) {
		n.AddHook(&hook{prefix: c.prefix, handshake: hs, node: true})
	})
	return c
}

// core is what Client and ClusterClient share.
type core struct {
	prefix    func(tenant.Tenant) string
	cmd       redis.Cmdable // the hooked client
	subscribe func(context.Context, ...string) *redis.PubSub
}

func newCore(cfg Config, cmd redis.Cmdable, subscribe func(context.Context, ...string) *redis.PubSub) core {
	p := cfg.Prefix
	if p == nil {
		p = redistenant.Prefix
	}
	return core{prefix: redisconfine.NewPrefixCache(p), cmd: cmd, subscribe: subscribe}
}

// purgeBatch is how many keys one SCAN step asks for and one UNLINK removes.
const purgeBatch = 500

// Purge deletes every key of tenant t and nothing else, as
// [redistenant.Client.Purge] does: SCAN of the tenant's namespace (on a
// cluster, on the node of the tenant's slot) and UNLINK in batches, through
// the confined client in t's context. It returns how many keys it removed.
// It is safe to rerun, and keys written while it runs may survive it.
func (c *core) Purge(ctx context.Context, t tenant.Tenant) (int64, error) {
	if err := t.Validate(); err != nil {
		return 0, err
	}
	ctx = tenant.NewContext(ctx, t)
	var removed int64
	var cursor uint64
	for {
		keys, next, err := c.cmd.Scan(ctx, cursor, "", purgeBatch).Result()
		if err != nil {
			return removed, fmt.Errorf("goredistenant: purge tenant %s: scan: %w", t, err)
		}
		if len(keys) > 0 {
			n, err := c.cmd.Unlink(ctx, keys...).Result()
			if err != nil {
				return removed, fmt.Errorf("goredistenant: purge tenant %s: unlink: %w", t, err)
			}
			removed += n
		}
		if next == 0 {
			return removed, nil
		}
		cursor = next
	}
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

// Watch is [Client.Watch] on the cluster: the keys, prefixed here, pick the
// node of the tenant's slot. go-redis's own Watch (c.ClusterClient.Watch)
// is refused.
func (c *ClusterClient) Watch(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error {
	t, err := tenant.Require(ctx)
	if err != nil {
		return err
	}
	prefix := c.prefix(t)
	confinedKeys := make([]string, len(keys))
	for i, k := range keys {
		confinedKeys[i] = prefix + k
	}
	// The node's hook lets the WATCH of these keys and the UNWATCH of
	// Tx.Close pass as they are; fn's commands carry fn's own context and
	// are confined there.
	return c.ClusterClient.Watch(confinedCtx(ctx), fn, confinedKeys...)
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

// Subscribe is [Client.Subscribe] on the cluster.
func (c *ClusterClient) Subscribe(ctx context.Context, channels ...string) *PubSub {
	return c.pubSub(ctx, (*PubSub).Subscribe, channels)
}

// PSubscribe is [Client.PSubscribe] on the cluster.
func (c *ClusterClient) PSubscribe(ctx context.Context, patterns ...string) *PubSub {
	return c.pubSub(ctx, (*PubSub).PSubscribe, patterns)
}

// SSubscribe is [Client.SSubscribe] on the cluster: the tenant's shard
// channels share its slot, so one node serves them.
func (c *ClusterClient) SSubscribe(ctx context.Context, channels ...string) *PubSub {
	return c.pubSub(ctx, (*PubSub).SSubscribe, channels)
}

func (c *core) pubSub(ctx context.Context, sub func(*PubSub, context.Context, ...string) error, names []string) *PubSub {
	t, err := tenant.Require(ctx)
	if err != nil {
		return &PubSub{err: err}
	}
	p := &PubSub{tenant: t, prefix: c.prefix(t)}
	p.ps = c.subscribe(p.mark(ctx))
	if len(names) > 0 {
		p.err = sub(p, ctx, names...)
	}
	return p
}

// Key returns k in the namespace of the context's tenant, for code that
// builds key names the hook does not see (a script's body, a key stored as
// a value).
func (c *core) Key(ctx context.Context, k string) (string, error) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return "", err
	}
	return c.prefix(t) + k, nil
}

// Strip returns key without the context tenant's prefix, for replies that
// hold key names the hook does not strip (see the package doc). ok is false
// when key is not in the tenant's namespace.
func (c *core) Strip(ctx context.Context, key string) (string, bool) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return "", false
	}
	return strings.CutPrefix(key, c.prefix(t))
}
