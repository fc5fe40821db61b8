package redistenant

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/redisconfine"
	"github.com/tenancykit/tenancy/tenant"
)

// Config configures [New]. Zero fields mean their documented defaults.
type Config struct {
	// Prefix returns the namespace of a tenant's keys, channels and
	// patterns. It must be injective and, on a cluster, contain a hash tag
	// so one tenant's keys share a slot. Defaults to [Prefix]: "t:{<id>}:".
	Prefix func(tenant.Tenant) string
	// MaxInFlight bounds the calls one tenant may have in flight at once
	// on the client (Do, DoMulti, DoCache, DoMultiCache; a DoMulti is one
	// call), so that a noisy tenant cannot take every pipeline slot. A call
	// over the bound waits for one of the tenant's calls to return, bounded
	// by its context, or fails with FailOverInFlight. Streams, Receive and
	// dedicated connections are not counted. Zero (the default) bounds
	// nothing. For a rate rather than a concurrency bound, see the
	// rueidislimiter recipe in the package documentation.
	MaxInFlight int
	// FailOverInFlight makes a call over MaxInFlight return an
	// *InFlightError at once instead of waiting.
	FailOverInFlight bool
}

// Prefix returns the default namespace of t: "t:{<id>}:". Tenant IDs hold no
// ':', '{', '}' or glob character, so prefixes of different tenants never
// overlap, and the braces make the ID the cluster hash tag.
func Prefix(t tenant.Tenant) string { return "t:{" + t.ID + "}:" }

// Client is a rueidis.Client that confines every command sent with a tenant
// context to that tenant's namespace: keys, channels and patterns get the
// tenant's prefix, and commands that would reach beyond it are refused. Code
// written for plain rueidis works unchanged where every call carries the
// tenant in its context and no key name is read back: key names in replies
// (SCAN, KEYS) and in client-side caching invalidations keep the prefix,
// and a call whose context has no tenant fails with tenant.ErrNoTenant —
// which is why rueidis's companion packages (rueidislock, rueidisaside,
// rueidiscompat) need a tenant-bound handle ([Client.For], [ClientBuilder]);
// see the package doc. It is safe for concurrent use.
type Client struct {
	c       rueidis.Client
	prefix  func(tenant.Tenant) string
	cluster bool
	builder rueidis.Builder
	// fl bounds each tenant's calls in flight (Config.MaxInFlight); nil: none.
	fl *inflight
}

var _ rueidis.Client = (*Client)(nil)

// New wraps c. Close the Client (or c) when done.
func New(c rueidis.Client, cfg Config) *Client {
	p := cfg.Prefix
	if p == nil {
		p = redisconfine.NewPrefixCache(Prefix)
	}
	return newClient(c, p, newInflight(cfg.MaxInFlight, cfg.FailOverInFlight))
}

func newClient(c rueidis.Client, prefix func(tenant.Tenant) string, fl *inflight) *Client {
	cl := &Client{c: c, prefix: prefix, builder: c.B(), fl: fl}
	if c.Mode() == rueidis.ClientModeCluster {
		if b, ok := uncheckedBuilder(); ok {
			cl.cluster, cl.builder = true, b
		}
	}
	return cl
}

// Unwrap returns the wrapped client, for work that belongs to no tenant.
func (c *Client) Unwrap() rueidis.Client { return c.c }

// B returns a command builder. On a cluster it does not require a
// command's keys to share a slot, as rueidis's cluster builder does: once
// prefixed, all keys of a tenant share the slot of its hash tag, so
// MSET a b c works for a tenant as it does on a single server.
func (c *Client) B() rueidis.Builder { return c.builder }

// Do sends cmd confined to the context's tenant.
func (c *Client) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	cmd, _, err := c.confine(ctx, cmd, redisconfine.Shared)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	t, err := c.fl.enter(ctx)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	defer c.fl.leave(t)
	return c.c.Do(ctx, cmd)
}

// DoMulti sends the commands confined to the context's tenant, pipelined. If
// any command is refused, none is sent and every result carries the error, so
// a MULTI/EXEC block never runs in part. MULTI, EXEC and DISCARD are allowed
// here, and only here on the shared client, as complete blocks: rueidis
// writes a DoMulti to the connection with no other tenant's command in
// between.
func (c *Client) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	if err := checkBlocks(multi); err != nil {
		return errResults(len(multi), err)
	}
	if err := c.confineAll(ctx, multi, redisconfine.Multi); err != nil {
		return errResults(len(multi), err)
	}
	t, err := c.fl.enter(ctx)
	if err != nil {
		return errResults(len(multi), err)
	}
	defer c.fl.leave(t)
	return c.c.DoMulti(ctx, multi...)
}

// DoCache sends cmd confined to the context's tenant, using client-side
// caching. A pinned Cacheable cannot be copied and is refused: build it per
// call.
func (c *Client) DoCache(ctx context.Context, cmd rueidis.Cacheable, ttl time.Duration) rueidis.RedisResult {
	cmd, err := c.confineCacheable(ctx, cmd)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	t, err := c.fl.enter(ctx)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	defer c.fl.leave(t)
	return c.c.DoCache(ctx, cmd, ttl)
}

// DoMultiCache is DoCache for several commands; if any is refused, none is
// sent.
func (c *Client) DoMultiCache(ctx context.Context, multi ...rueidis.CacheableTTL) []rueidis.RedisResult {
	for i := range multi {
		cmd, err := c.confineCacheable(ctx, multi[i].Cmd)
		if err != nil {
			return errResults(len(multi), err)
		}
		multi[i].Cmd = cmd
	}
	t, err := c.fl.enter(ctx)
	if err != nil {
		return errResults(len(multi), err)
	}
	defer c.fl.leave(t)
	return c.c.DoMultiCache(ctx, multi...)
}

// DoStream sends cmd confined to the context's tenant and streams its reply.
func (c *Client) DoStream(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResultStream {
	cmd, _, err := c.confine(ctx, cmd, redisconfine.Shared)
	if err != nil {
		return rueidis.NewErrorResultStream(err)
	}
	return c.c.DoStream(ctx, cmd)
}

// DoMultiStream is DoStream for several commands; if any is refused, none is
// sent.
func (c *Client) DoMultiStream(ctx context.Context, multi ...rueidis.Completed) rueidis.MultiRedisResultStream {
	if err := c.confineAll(ctx, multi, redisconfine.Shared); err != nil {
		return rueidis.NewErrorResultStream(err)
	}
	return c.c.DoMultiStream(ctx, multi...)
}

// Receive subscribes confined to the context's tenant: channels and patterns
// get the tenant's prefix, and fn sees them without it.
func (c *Client) Receive(ctx context.Context, subscribe rueidis.Completed, fn func(msg rueidis.PubSubMessage)) error {
	subscribe, prefix, err := c.confine(ctx, subscribe, redisconfine.Receive)
	if err != nil {
		return err
	}
	return c.c.Receive(ctx, subscribe, stripMessages(prefix, fn))
}

// Dedicated runs fn with a dedicated connection that is confined like c.
// WATCH, UNWATCH, MULTI, EXEC and DISCARD are allowed there (optimistic
// transactions); a WATCH or MULTI left open when fn returns is discarded
// before the connection goes back to the pool.
func (c *Client) Dedicated(fn func(rueidis.DedicatedClient) error) error {
	return c.c.Dedicated(func(dc rueidis.DedicatedClient) error {
		d := &dedicated{dc: dc, parent: c}
		defer d.clean()
		return fn(d)
	})
}

// Dedicate returns a dedicated connection that is confined like c, and the
// func that gives it back, first discarding a WATCH or MULTI left open.
func (c *Client) Dedicate() (rueidis.DedicatedClient, func()) {
	dc, cancel := c.c.Dedicate()
	d := &dedicated{dc: dc, parent: c}
	return d, func() { d.clean(); cancel() }
}

// Nodes returns the nodes of the wrapped client, each confined like c.
func (c *Client) Nodes() map[string]rueidis.Client {
	nodes := c.c.Nodes()
	out := make(map[string]rueidis.Client, len(nodes))
	for addr, n := range nodes {
		out[addr] = newClient(n, c.prefix, c.fl)
	}
	return out
}

// Mode returns the mode of the wrapped client.
func (c *Client) Mode() rueidis.ClientMode { return c.c.Mode() }

// Close closes the wrapped client.
func (c *Client) Close() { c.c.Close() }

// Key returns k in the namespace of the context's tenant, for code that
// builds commands the wrapper does not see.
func (c *Client) Key(ctx context.Context, k string) (string, error) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return "", err
	}
	return c.prefix(t) + k, nil
}

// Strip returns key without the context's tenant prefix, for replies that
// hold key names. ok is false when key is not in the tenant's namespace.
func (c *Client) Strip(ctx context.Context, key string) (string, bool) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return "", false
	}
	return strings.CutPrefix(key, c.prefix(t))
}

func (c *Client) confineAll(ctx context.Context, multi []rueidis.Completed, use redisconfine.Usage) error {
	for i := range multi {
		cmd, _, err := c.confine(ctx, multi[i], use)
		if err != nil {
			return err
		}
		multi[i] = cmd
	}
	return nil
}

// confine rewrites cmd into the context tenant's namespace and returns it
// with the prefix used.
func (c *Client) confine(ctx context.Context, cmd rueidis.Completed, use redisconfine.Usage) (rueidis.Completed, string, error) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return cmd, "", err
	}
	prefix := c.prefix(t)
	args := cmd.Commands()
	p, err := redisconfine.For(args, use, alternatives)
	if err != nil {
		return cmd, "", err
	}
	if c.cluster {
		clusterSlot(completedSlot(&cmd))
	}
	if p.Len() == 0 && !p.MatchAll {
		return cmd, prefix, nil
	}
	if pinnedCompleted(&cmd) || p.MatchAll {
		if strings.HasSuffix(strings.ToUpper(args[0]), "SUBSCRIBE") {
			return cmd, "", unsupported(strings.ToUpper(args[0]), "a pinned subscribe command cannot be copied; build it per call")
		}
		out := c.copyCompleted(cmd, redisconfine.Apply(append([]string(nil), args...), p, prefix), p)
		if p.ToTenantSlot {
			out = out.SetSlot(prefix)
		}
		return out, prefix, nil
	}
	redisconfine.Apply(args, p, prefix)
	if k, ok := redisconfine.FirstKey(args, p); ok {
		cmd = cmd.SetSlot(k)
	} else if p.ToTenantSlot {
		cmd = cmd.SetSlot(prefix)
	}
	return cmd, prefix, nil
}

func (c *Client) confineCacheable(ctx context.Context, cmd rueidis.Cacheable) (rueidis.Cacheable, error) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return cmd, err
	}
	args := cmd.Commands()
	p, err := redisconfine.For(args, redisconfine.Shared, alternatives)
	if err != nil {
		return cmd, err
	}
	if c.cluster {
		clusterSlot(cacheableSlot(&cmd))
	}
	if p.Len() == 0 {
		return cmd, nil
	}
	if pinnedCacheable(&cmd) || p.MatchAll {
		return cmd, unsupported(strings.ToUpper(args[0]), "a pinned Cacheable cannot be copied; build it per call")
	}
	prefix := c.prefix(t)
	redisconfine.Apply(args, p, prefix)
	if k, ok := redisconfine.FirstKey(args, p); ok {
		cmd = rueidis.Cacheable(rueidis.Completed(cmd).SetSlot(k))
	} else if p.ToTenantSlot {
		cmd = rueidis.Cacheable(rueidis.Completed(cmd).SetSlot(prefix))
	}
	return cmd, nil
}

// copyCompleted builds a new command with args and the flags of orig.
func (c *Client) copyCompleted(orig rueidis.Completed, args []string, p redisconfine.Plan) rueidis.Completed {
	arb := c.c.B().Arbitrary(args...)
	var out rueidis.Completed
	switch {
	case orig.IsBlock():
		out = arb.Blocking()
	case strings.EqualFold(args[0], "MGET") && orig.IsReadOnly():
		out = arb.MultiGet()
	case orig.IsReadOnly():
		out = arb.ReadOnly()
	default:
		out = arb.Build()
	}
	if orig.IsPipe() {
		out = out.ToPipe()
	}
	if orig.IsRetryable() && !orig.IsReadOnly() {
		out = out.ToRetryable()
	}
	if orig.IsUnblockOnCancel() {
		out = out.UnblockOnCancel()
	}
	if k, ok := redisconfine.FirstKey(args, p); ok {
		out = out.SetSlot(k)
	}
	return out
}

func stripMessages(prefix string, fn func(rueidis.PubSubMessage)) func(rueidis.PubSubMessage) {
	pattern := redisconfine.EscapeGlob(prefix)
	return func(m rueidis.PubSubMessage) {
		m.Channel = strings.TrimPrefix(m.Channel, prefix)
		m.Pattern = strings.TrimPrefix(m.Pattern, pattern)
		fn(m)
	}
}

func errResults(n int, err error) []rueidis.RedisResult {
	out := make([]rueidis.RedisResult, n)
	for i := range out {
		out[i] = rueidis.NewErrorResult(err)
	}
	return out
}

// dedicated is a confined rueidis.DedicatedClient.
type dedicated struct {
	dc     rueidis.DedicatedClient
	parent *Client
	// inMulti and watched track the transaction state the tenant left on
	// the connection, cleared before it is given back.
	inMulti, watched atomic.Bool
	// prefix is that of the last tenant that sent a command here, for the
	// pub/sub hooks, which run on rueidis's goroutine.
	prefix atomic.Pointer[string]
}

func (d *dedicated) lastPrefix() string {
	if p := d.prefix.Load(); p != nil {
		return *p
	}
	return ""
}

var _ rueidis.DedicatedClient = (*dedicated)(nil)

// B returns the parent's builder: on a cluster it lets a tenant's
// multi-key command name unprefixed keys of different slots, as Client.B
// does (prefixed, they share the tenant's slot).
func (d *dedicated) B() rueidis.Builder { return d.parent.B() }

func (d *dedicated) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	cmd, prefix, err := d.parent.confine(ctx, cmd, redisconfine.Dedicated)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	d.prefix.Store(&prefix)
	d.track(cmd)
	return d.dc.Do(ctx, cmd)
}

// track follows the transaction state cmd leaves on the connection.
func (d *dedicated) track(cmd rueidis.Completed) {
	args := cmd.Commands()
	if len(args) == 0 {
		return
	}
	switch n := args[0]; {
	case strings.EqualFold(n, "multi"):
		d.inMulti.Store(true)
	case strings.EqualFold(n, "exec"), strings.EqualFold(n, "discard"):
		d.inMulti.Store(false)
		d.watched.Store(false)
	case strings.EqualFold(n, "watch"):
		d.watched.Store(true)
	case strings.EqualFold(n, "unwatch"):
		d.watched.Store(false)
	}
}

// clean discards a MULTI or WATCH the tenant left open, so the connection
// goes back to the pool as it came.
func (d *dedicated) clean() {
	ctx := context.Background()
	switch {
	case d.inMulti.Load():
		_ = d.dc.Do(ctx, d.dc.B().Discard().Build()).Error()
	case d.watched.Load():
		_ = d.dc.Do(ctx, d.dc.B().Unwatch().Build()).Error()
	}
	d.inMulti.Store(false)
	d.watched.Store(false)
}

func (d *dedicated) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	if err := d.parent.confineAll(ctx, multi, redisconfine.Dedicated); err != nil {
		return errResults(len(multi), err)
	}
	if t, err := tenant.Require(ctx); err == nil {
		p := d.parent.prefix(t)
		d.prefix.Store(&p)
	}
	for _, cmd := range multi {
		d.track(cmd)
	}
	return d.dc.DoMulti(ctx, multi...)
}

func (d *dedicated) Receive(ctx context.Context, subscribe rueidis.Completed, fn func(msg rueidis.PubSubMessage)) error {
	subscribe, prefix, err := d.parent.confine(ctx, subscribe, redisconfine.Dedicated)
	if err != nil {
		return err
	}
	return d.dc.Receive(ctx, subscribe, stripMessages(prefix, fn))
}

// SetPubSubHooks sets hooks whose messages and subscriptions are stripped of
// the prefix of the tenant that last sent a command on this connection.
func (d *dedicated) SetPubSubHooks(hooks rueidis.PubSubHooks) <-chan error {
	if onMsg := hooks.OnMessage; onMsg != nil {
		hooks.OnMessage = func(m rueidis.PubSubMessage) {
			if p := d.lastPrefix(); p != "" {
				m.Channel = strings.TrimPrefix(m.Channel, p)
				m.Pattern = strings.TrimPrefix(m.Pattern, redisconfine.EscapeGlob(p))
			}
			onMsg(m)
		}
	}
	if onSub := hooks.OnSubscription; onSub != nil {
		hooks.OnSubscription = func(s rueidis.PubSubSubscription) {
			if p := d.lastPrefix(); p != "" {
				s.Channel = strings.TrimPrefix(strings.TrimPrefix(s.Channel, p), redisconfine.EscapeGlob(p))
			}
			onSub(s)
		}
	}
	return d.dc.SetPubSubHooks(hooks)
}

// SetOnInvalidations passes fn through; invalidated keys carry the prefix.
func (d *dedicated) SetOnInvalidations(fn func([]rueidis.RedisMessage)) <-chan error {
	return d.dc.SetOnInvalidations(fn)
}

func (d *dedicated) Close() { d.dc.Close() }
