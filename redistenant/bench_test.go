package redistenant_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// The benchmarks compare the plain rueidis client (raw) with the same client
// wrapped by redistenant (tenant), serially and in parallel, on the same
// server in the same run.
func benchClients(b *testing.B) (map[string]rueidis.Client, context.Context) {
	raw := testenv.RedisClient(b)
	tn := testenv.Tenant(b, "bench")
	ctx := tenant.NewContext(context.Background(), tn)
	wrapped := redistenant.New(raw, redistenant.Config{})
	b.Cleanup(func() { _, _ = wrapped.Purge(context.Background(), tn) })
	return map[string]rueidis.Client{"raw": raw, "tenant": wrapped}, ctx
}

func runBench(b *testing.B, name string, op func(c rueidis.Client, ctx context.Context) error) {
	clients, ctx := benchClients(b)
	for _, mode := range []string{"serial", "parallel"} {
		for _, impl := range []string{"raw", "tenant"} {
			c := clients[impl]
			b.Run("mode="+mode+"/impl="+impl, func(b *testing.B) {
				if err := op(c, ctx); err != nil { // warm up, and create the keys
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				if mode == "serial" {
					for i := 0; i < b.N; i++ {
						if err := op(c, ctx); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := op(c, ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
	_ = name
}

func BenchmarkGet(b *testing.B) {
	runBench(b, "get", func(c rueidis.Client, ctx context.Context) error {
		err := c.Do(ctx, c.B().Get().Key("bench:get").Build()).Error()
		if rueidis.IsRedisNil(err) {
			return nil
		}
		return err
	})
}

func BenchmarkMSet10(b *testing.B) {
	keys := make([]string, 10)
	for i := range keys {
		keys[i] = "{bench}:k" + strconv.Itoa(i) // one slot for raw too
	}
	runBench(b, "mset10", func(c rueidis.Client, ctx context.Context) error {
		cmd := c.B().Mset().KeyValue()
		for _, k := range keys {
			cmd = cmd.KeyValue(k, "v")
		}
		return c.Do(ctx, cmd.Build()).Error()
	})
}

func BenchmarkEval(b *testing.B) {
	runBench(b, "eval", func(c rueidis.Client, ctx context.Context) error {
		return c.Do(ctx, c.B().Eval().Script("return redis.call('INCR', KEYS[1])").Numkeys(1).Key("bench:eval").Build()).Error()
	})
}
