package goredistenant

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/internal/redisconfine"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// PubSub is a subscription of one tenant: the channels and patterns it
// names are in that tenant's namespace, and the messages and subscription
// replies it returns name them without the prefix. Its methods are those of
// go-redis's PubSub; a context naming another tenant is refused with
// [redistenant.ErrTenantMismatch], and one naming none with
// tenant.ErrNoTenant. Like go-redis's PubSub it is safe for concurrent use,
// and must be closed.
type PubSub struct {
	ps     *redis.PubSub
	tenant tenant.Tenant
	prefix string
	err    error // from making it: returned by every method

	once, closeOnce sync.Once
	ch              chan *redis.Message
	done            chan struct{}
}

// mark is ctx as this package gives it to go-redis's PubSub: a connection
// dialed with it may write subscriptions (see guard.go).
func (p *PubSub) mark(ctx context.Context) context.Context {
	return context.WithValue(ctx, subscriberKey, true)
}

// names confines the channels or patterns of one subscribe-family command.
func (p *PubSub) names(ctx context.Context, cmd string, names []string) ([]string, error) {
	if err := p.own(ctx); err != nil {
		return nil, err
	}
	argv := append([]string{cmd}, names...)
	plan, err := redisconfine.For(argv, redisconfine.Receive, alternatives)
	if err != nil {
		return nil, err
	}
	return redisconfine.Apply(argv, plan, p.prefix)[1:], nil
}

func (p *PubSub) do(ctx context.Context, cmd string, names []string, f func(context.Context, ...string) error) error {
	confined, err := p.names(ctx, cmd, names)
	if err != nil {
		return err
	}
	return f(p.mark(ctx), confined...)
}

// Subscribe subscribes to more channels.
func (p *PubSub) Subscribe(ctx context.Context, channels ...string) error {
	return p.do(ctx, "subscribe", channels, p.ps.Subscribe)
}

// PSubscribe subscribes to more patterns.
func (p *PubSub) PSubscribe(ctx context.Context, patterns ...string) error {
	return p.do(ctx, "psubscribe", patterns, p.ps.PSubscribe)
}

// SSubscribe subscribes to more shard channels.
func (p *PubSub) SSubscribe(ctx context.Context, channels ...string) error {
	return p.do(ctx, "ssubscribe", channels, p.ps.SSubscribe)
}

// Unsubscribe unsubscribes from channels, or from every channel if none is
// given.
func (p *PubSub) Unsubscribe(ctx context.Context, channels ...string) error {
	return p.do(ctx, "unsubscribe", channels, p.ps.Unsubscribe)
}

// PUnsubscribe unsubscribes from patterns, or from every pattern if none is
// given.
func (p *PubSub) PUnsubscribe(ctx context.Context, patterns ...string) error {
	return p.do(ctx, "punsubscribe", patterns, p.ps.PUnsubscribe)
}

// SUnsubscribe unsubscribes from shard channels, or from every one if none
// is given.
func (p *PubSub) SUnsubscribe(ctx context.Context, channels ...string) error {
	return p.do(ctx, "sunsubscribe", channels, p.ps.SUnsubscribe)
}

// own checks that ctx names the PubSub's tenant, which every method and
// every received message asks.
func (p *PubSub) own(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	t, err := tenant.Require(ctx)
	if err != nil {
		return err
	}
	if t.ID != p.tenant.ID {
		return redistenant.ErrTenantMismatch
	}
	return nil
}

// Ping pings the server over the subscription's connection.
func (p *PubSub) Ping(ctx context.Context, payload ...string) error {
	if err := p.own(ctx); err != nil {
		return err
	}
	return p.ps.Ping(p.mark(ctx), payload...)
}

// Receive returns the next message, subscription reply or pong, with
// channels and patterns stripped of the tenant's prefix.
func (p *PubSub) Receive(ctx context.Context) (any, error) {
	return p.ReceiveTimeout(ctx, 0)
}

// ReceiveTimeout is Receive with a read timeout (0: none).
func (p *PubSub) ReceiveTimeout(ctx context.Context, timeout time.Duration) (any, error) {
	if err := p.own(ctx); err != nil {
		return nil, err
	}
	msg, err := p.ps.ReceiveTimeout(p.mark(ctx), timeout)
	p.strip(msg)
	return msg, err
}

// ReceiveMessage returns the next message, skipping subscription replies
// and pongs.
func (p *PubSub) ReceiveMessage(ctx context.Context) (*redis.Message, error) {
	for {
		msg, err := p.Receive(ctx)
		if err != nil {
			return nil, err
		}
		if m, ok := msg.(*redis.Message); ok {
			return m, nil
		}
	}
}

func (p *PubSub) strip(msg any) {
	switch m := msg.(type) {
	case *redis.Message:
		m.Channel = strings.TrimPrefix(m.Channel, p.prefix)
		m.Pattern = strings.TrimPrefix(m.Pattern, redisconfine.EscapeGlob(p.prefix))
	case *redis.Subscription:
		if strings.HasPrefix(m.Kind, "p") {
			m.Channel = strings.TrimPrefix(m.Channel, redisconfine.EscapeGlob(p.prefix))
		} else {
			m.Channel = strings.TrimPrefix(m.Channel, p.prefix)
		}
	}
}

// Channel returns a channel of the subscription's messages, stripped of the
// prefix, of capacity size (100 if size <= 0). It is closed when the
// PubSub is. Messages are received with the tenant's context by one
// goroutine, which reconnects and resubscribes after a connection error as
// go-redis's PubSub does. Use Channel or Receive, not both.
func (p *PubSub) Channel(size int) <-chan *redis.Message {
	p.once.Do(func() {
		if size <= 0 {
			size = 100
		}
		p.ch, p.done = make(chan *redis.Message, size), make(chan struct{})
		if p.err != nil {
			close(p.ch)
			return
		}
		go p.deliver()
	})
	return p.ch
}

func (p *PubSub) deliver() {
	defer close(p.ch)
	ctx := tenant.NewContext(context.Background(), p.tenant)
	for failures := 0; ; {
		msg, err := p.ReceiveMessage(ctx)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) {
				return
			}
			failures++
			select {
			case <-p.done:
				return
			case <-time.After(min(time.Duration(failures)*10*time.Millisecond, time.Second)):
			}
			continue
		}
		failures = 0
		select {
		case p.ch <- msg:
		case <-p.done:
			return
		}
	}
}

// Close closes the subscription and its connection.
func (p *PubSub) Close() error {
	p.once.Do(func() { // Channel after Close returns a closed channel
		p.ch = make(chan *redis.Message)
		close(p.ch)
	})
	p.closeOnce.Do(func() {
		if p.done != nil {
			close(p.done)
		}
	})
	if p.ps == nil {
		return p.err
	}
	return p.ps.Close()
}

// String describes the subscription, with the tenant's prefix.
func (p *PubSub) String() string {
	if p.ps == nil {
		return "PubSub(" + p.err.Error() + ")"
	}
	return p.ps.String()
}
