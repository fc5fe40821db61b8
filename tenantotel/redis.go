package tenantotel

import (
	"context"
	"time"

	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancykit/tenancy/tenant"
)

// WrapRedis returns c with a client span and the tenancy.redis.* metrics
// for every Do, DoMulti, DoCache, DoMultiCache and Receive, attributed to
// the tenant in the call's context. Wrap the client that
// [redistenant.New] confines (redistenant.New(tel.WrapRedis(raw), cfg)):
// the wrapper then sees each call's tenant, and only confined keys, which
// it never records. Spans are named by the command ("GET", "SET", "multi"
// for DoMulti) with db.system.name "redis" and db.operation.name; a nil
// reply is no error. Dedicated connections and streams pass through
// unrecorded.
func (t *Telemetry) WrapRedis(c rueidis.Client) rueidis.Client {
	return &redisClient{Client: c, t: t}
}

type redisClient struct {
	rueidis.Client
	t *Telemetry
}

var redisSystem = attribute.String("db.system.name", "redis")

// start begins a call's span and returns what end needs.
func (r *redisClient) start(ctx context.Context, name string) (context.Context, *call) {
	tn, ok := tenant.FromContext(ctx)
	c := &call{start: time.Now(), set: r.t.card.set(tn, ok), own: true}
	ctx, c.span = r.t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	if c.span.IsRecording() {
		c.span.SetAttributes(append(spanAttrs(tn, ok), redisSystem, attribute.String("db.operation.name", name))...)
	}
	return ctx, c
}

// finish records n commands of which failed failed, and ends the span.
func (r *redisClient) finish(ctx context.Context, c *call, n, failed int, err error) {
	r.t.rcmds.Add(ctx, int64(n), c.set.add...)
	r.t.rlatency.Record(ctx, time.Since(c.start).Seconds(), c.set.rec...)
	if failed > 0 {
		r.t.rerrs.Add(ctx, int64(failed), c.set.add...)
		c.span.SetStatus(codes.Error, err.Error())
		c.span.RecordError(err)
	}
	c.span.End()
}

func redisErr(res rueidis.RedisResult) error {
	if err := res.Error(); err != nil && !rueidis.IsRedisNil(err) {
		return err
	}
	return nil
}

func (r *redisClient) results(ctx context.Context, c *call, res []rueidis.RedisResult) []rueidis.RedisResult {
	failed, first := 0, error(nil)
	for _, x := range res {
		if err := redisErr(x); err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	r.finish(ctx, c, len(res), failed, first)
	return res
}

func commandName(cmd []string) string {
	if len(cmd) == 0 {
		return "redis"
	}
	return cmd[0]
}

// Do implements rueidis.Client.
func (r *redisClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	ctx, c := r.start(ctx, commandName(cmd.Commands()))
	res := r.Client.Do(ctx, cmd)
	err := redisErr(res)
	r.finish(ctx, c, 1, boolInt(err != nil), err)
	return res
}

// DoMulti implements rueidis.Client.
func (r *redisClient) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	ctx, c := r.start(ctx, "multi")
	return r.results(ctx, c, r.Client.DoMulti(ctx, multi...))
}

// DoCache implements rueidis.Client.
func (r *redisClient) DoCache(ctx context.Context, cmd rueidis.Cacheable, ttl time.Duration) rueidis.RedisResult {
	ctx, c := r.start(ctx, commandName(cmd.Commands()))
	res := r.Client.DoCache(ctx, cmd, ttl)
	err := redisErr(res)
	r.finish(ctx, c, 1, boolInt(err != nil), err)
	return res
}

// DoMultiCache implements rueidis.Client.
func (r *redisClient) DoMultiCache(ctx context.Context, multi ...rueidis.CacheableTTL) []rueidis.RedisResult {
	ctx, c := r.start(ctx, "multi")
	return r.results(ctx, c, r.Client.DoMultiCache(ctx, multi...))
}

// Receive implements rueidis.Client: the span lasts as long as the
// subscription.
func (r *redisClient) Receive(ctx context.Context, subscribe rueidis.Completed, fn func(msg rueidis.PubSubMessage)) error {
	ctx, c := r.start(ctx, commandName(subscribe.Commands()))
	err := r.Client.Receive(ctx, subscribe, fn)
	r.finish(ctx, c, 1, boolInt(err != nil), err)
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
