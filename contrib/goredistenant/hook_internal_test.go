package goredistenant

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/internal/redisconfine"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// BenchmarkHookCost measures what the hook adds to a command on the CPU,
// without the network (next does nothing): the cost of confining a GET, a
// SET with options and a pipeline of 10 SETs, next to the same call with no
// hook. BenchmarkGoRedis measures the whole round trip.
func BenchmarkHookCost(b *testing.B) {
	tn, err := tenant.New("bench-tenant-1", "bench")
	if err != nil {
		b.Fatal(err)
	}
	ctx := tenant.NewContext(context.Background(), tn)
	h := &hook{prefix: redisconfine.NewPrefixCache(redistenant.Prefix), handshake: newHandshake(&redis.Options{})}
	none := func(context.Context, redis.Cmder) error { return nil }
	noneP := func(context.Context, []redis.Cmder) error { return nil }
	for _, hooked := range []bool{false, true} {
		name := map[bool]string{false: "/hook=none", true: "/hook=confine"}[hooked]
		process, pipeline := redis.ProcessHook(none), redis.ProcessPipelineHook(noneP)
		if hooked {
			process, pipeline = h.ProcessHook(none), h.ProcessPipelineHook(noneP)
		}
		b.Run("op=get"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := process(ctx, redis.NewStringCmd(ctx, "get", "cart:42")); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("op=set-ex"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := process(ctx, redis.NewStatusCmd(ctx, "set", "cart:42", "3", "ex", 60)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("op=pipeline10"+name, func(b *testing.B) {
			b.ReportAllocs()
			cmds := make([]redis.Cmder, 10)
			for b.Loop() {
				for i := range cmds {
					cmds[i] = redis.NewStatusCmd(ctx, "set", "cart:42", "3")
				}
				if err := pipeline(ctx, cmds); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
