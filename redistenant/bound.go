package redistenant

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/tenant"
)

// ErrTenantMismatch is returned by a [Bound] handle for a call whose context
// names another tenant than the handle's.
var ErrTenantMismatch = errors.New("redistenant: context names another tenant than the bound client's")

// Bound is a rueidis.Client confined to one tenant whatever the contexts of
// its calls carry — for code that does not pass the tenant in its contexts:
// rueidis's companion packages, which call with context.Background(), and
// libraries written for plain rueidis. A call whose context carries no
// tenant runs in the handle's tenant; one whose context names another
// tenant is refused with [ErrTenantMismatch]. Everything else is as on the
// [Client]: keys, channels and patterns prefixed, commands that reach beyond
// the tenant refused, dedicated connections confined alike.
//
// Replies are not rewritten: key names read back (SCAN, KEYS) carry the
// prefix, as on the Client ([Client.Scan] and [Client.Keys], and [Compat]'s
// Scan and Keys, return them without it). Client-side caching invalidations reach the
// handle's owner without the prefix only on a client made by
// [ClientBuilder].
type Bound struct {
	c     *Client
	t     tenant.Tenant
	owned bool // Close closes the wrapped client (ClientBuilder's)
}

var _ rueidis.Client = (*Bound)(nil)

// For returns a handle on c confined to t. Closing the handle does not close
// c: it is shared.
func (c *Client) For(t tenant.Tenant) (*Bound, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &Bound{c: c, t: t}, nil
}

// Tenant returns the handle's tenant.
func (b *Bound) Tenant() tenant.Tenant { return b.t }

// bind returns ctx carrying the handle's tenant, or an error if it names
// another one.
func (b *Bound) bind(ctx context.Context) (context.Context, error) {
	if t, ok := tenant.FromContext(ctx); ok {
		if t != b.t {
			return nil, fmt.Errorf("%w: %s, not %s", ErrTenantMismatch, t, b.t)
		}
		return ctx, nil
	}
	return tenant.NewContext(ctx, b.t), nil
}

// B returns a command builder (see [Client.B]).
func (b *Bound) B() rueidis.Builder { return b.c.B() }

// Do sends cmd confined to the handle's tenant.
func (b *Bound) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	ctx, err := b.bind(ctx)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	return b.c.Do(ctx, cmd)
}

// DoMulti sends the commands confined to the handle's tenant.
func (b *Bound) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	ctx, err := b.bind(ctx)
	if err != nil {
		return errResults(len(multi), err)
	}
	return b.c.DoMulti(ctx, multi...)
}

// DoCache is [Client.DoCache] in the handle's tenant.
func (b *Bound) DoCache(ctx context.Context, cmd rueidis.Cacheable, ttl time.Duration) rueidis.RedisResult {
	ctx, err := b.bind(ctx)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	return b.c.DoCache(ctx, cmd, ttl)
}

// DoMultiCache is [Client.DoMultiCache] in the handle's tenant.
func (b *Bound) DoMultiCache(ctx context.Context, multi ...rueidis.CacheableTTL) []rueidis.RedisResult {
	ctx, err := b.bind(ctx)
	if err != nil {
		return errResults(len(multi), err)
	}
	return b.c.DoMultiCache(ctx, multi...)
}

// DoStream is [Client.DoStream] in the handle's tenant.
func (b *Bound) DoStream(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResultStream {
	ctx, err := b.bind(ctx)
	if err != nil {
		return rueidis.NewErrorResultStream(err)
	}
	return b.c.DoStream(ctx, cmd)
}

// DoMultiStream is [Client.DoMultiStream] in the handle's tenant.
func (b *Bound) DoMultiStream(ctx context.Context, multi ...rueidis.Completed) rueidis.MultiRedisResultStream {
	ctx, err := b.bind(ctx)
	if err != nil {
		return rueidis.NewErrorResultStream(err)
	}
	return b.c.DoMultiStream(ctx, multi...)
}

// Receive is [Client.Receive] in the handle's tenant.
func (b *Bound) Receive(ctx context.Context, subscribe rueidis.Completed, fn func(msg rueidis.PubSubMessage)) error {
	ctx, err := b.bind(ctx)
	if err != nil {
		return err
	}
	return b.c.Receive(ctx, subscribe, fn)
}

// Dedicated runs fn with a dedicated connection confined to the handle's
// tenant (see [Client.Dedicated]).
func (b *Bound) Dedicated(fn func(rueidis.DedicatedClient) error) error {
	return b.c.Dedicated(func(dc rueidis.DedicatedClient) error { return fn(&boundDedicated{dc, b}) })
}

// Dedicate returns a dedicated connection confined to the handle's tenant.
func (b *Bound) Dedicate() (rueidis.DedicatedClient, func()) {
	dc, cancel := b.c.Dedicate()
	return &boundDedicated{dc, b}, cancel
}

// Nodes returns the nodes of the wrapped client, each bound to the tenant.
func (b *Bound) Nodes() map[string]rueidis.Client {
	nodes := b.c.Nodes()
	out := make(map[string]rueidis.Client, len(nodes))
	for addr, n := range nodes {
		out[addr] = &Bound{c: n.(*Client), t: b.t}
	}
	return out
}

// Mode returns the mode of the wrapped client.
func (b *Bound) Mode() rueidis.ClientMode { return b.c.Mode() }

// Close does nothing on a handle from [Client.For] (the client is shared)
// and closes the client of a handle made by [ClientBuilder].
func (b *Bound) Close() {
	if b.owned {
		b.c.Close()
	}
}

// boundDedicated binds a dedicated connection's calls to the tenant.
type boundDedicated struct {
	rueidis.DedicatedClient
	b *Bound
}

func (d *boundDedicated) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	ctx, err := d.b.bind(ctx)
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	return d.DedicatedClient.Do(ctx, cmd)
}

func (d *boundDedicated) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	ctx, err := d.b.bind(ctx)
	if err != nil {
		return errResults(len(multi), err)
	}
	return d.DedicatedClient.DoMulti(ctx, multi...)
}

func (d *boundDedicated) Receive(ctx context.Context, subscribe rueidis.Completed, fn func(msg rueidis.PubSubMessage)) error {
	ctx, err := d.b.bind(ctx)
	if err != nil {
		return err
	}
	return d.DedicatedClient.Receive(ctx, subscribe, fn)
}

// ClientBuilder returns a builder of clients bound to t, for rueidis
// companions that build their own client from a rueidis.ClientOption
// (rueidislock's LockerOption.ClientBuilder): each call makes a new rueidis
// client, wraps it with cfg and binds it to t. Its client-side caching
// invalidations reach option.OnInvalidations with t's prefix stripped, and
// invalidations of keys outside t's namespace are dropped (a flush, nil, is
// passed on). Closing the returned client closes the client it made.
func ClientBuilder(t tenant.Tenant, cfg Config) func(rueidis.ClientOption) (rueidis.Client, error) {
	return func(opt rueidis.ClientOption) (rueidis.Client, error) {
		if err := t.Validate(); err != nil {
			return nil, err
		}
		prefix := Prefix
		if cfg.Prefix != nil {
			prefix = cfg.Prefix
		}
		if fn := opt.OnInvalidations; fn != nil {
			p := prefix(t)
			opt.OnInvalidations = func(msgs []rueidis.RedisMessage) {
				if msgs == nil {
					fn(nil)
					return
				}
				out := make([]rueidis.RedisMessage, 0, len(msgs))
				for _, m := range msgs {
					if s, ok := stripMessage(m, p); ok {
						out = append(out, s)
					}
				}
				if len(out) > 0 {
					fn(out)
				}
			}
		}
		rc, err := rueidis.NewClient(opt)
		if err != nil {
			return nil, err
		}
		return &Bound{c: New(rc, cfg), t: t, owned: true}, nil
	}
}

// stripMessage returns the string message m without prefix, and false when
// m is not a string in prefix's namespace. rueidis exports no constructor
// of a RedisMessage; its cache serialisation (CacheMarshal, then
// CacheUnmarshalView) is public, so the message is rebuilt from m's own
// header (TTL and type) and the stripped string. stripWorks checks the
// round trip against the pinned rueidis at start-up; where it fails, keys
// are passed on with the prefix.
func stripMessage(m rueidis.RedisMessage, prefix string) (rueidis.RedisMessage, bool) {
	s, err := m.ToString()
	if err != nil {
		return m, false
	}
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return m, false
	}
	if !stripWorks {
		return m, true
	}
	return rebuild(m, rest), true
}

// rebuild is m with its string value replaced by s: the 7 bytes of TTL and
// the type byte of m's cache serialisation, an 8-byte big-endian length, s.
func rebuild(m rueidis.RedisMessage, s string) rueidis.RedisMessage {
	head := m.CacheMarshal(nil)
	buf := make([]byte, 0, 16+len(s))
	buf = append(buf, head[:8]...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(len(s)))
	buf = append(buf, s...)
	var out rueidis.RedisMessage
	if out.CacheUnmarshalView(buf) != nil {
		return m
	}
	return out
}

// stripWorks reports whether rebuild gives back the string it is handed on
// this rueidis: the serialisation is rueidis's own and may change.
var stripWorks = func() bool {
	var m rueidis.RedisMessage
	// A blob string "t:{x}:k" as rueidis serialises it: TTL, '$', length, bytes.
	src := append(make([]byte, 7), '$')
	src = binary.BigEndian.AppendUint64(src, 7)
	src = append(src, "t:{x}:k"...)
	if m.CacheUnmarshalView(src) != nil {
		return false
	}
	if s, err := m.ToString(); err != nil || s != "t:{x}:k" {
		return false
	}
	out := rebuild(m, "k")
	s, err := out.ToString()
	return err == nil && s == "k"
}()
