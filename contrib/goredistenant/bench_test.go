package goredistenant_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/contrib/goredistenant"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
)

// BenchmarkGoRedis compares the confined client with raw go-redis on the
// same server, in one run: GET and SET one by one (serial and parallel) and
// a pipeline of 10 SETs. The raw client is given the tenant's prefixed keys
// so both do the same work on the server.
func BenchmarkGoRedis(b *testing.B) {
	addr := testenv.Redis(b)
	tn := testenv.Tenant(b, "gbench")
	ctx := ctxFor(tn)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	conf := goredistenant.New(redis.NewClient(&redis.Options{Addr: addr}), goredistenant.Config{})
	defer conf.Close()
	pre := redistenant.Prefix(tn)
	b.Cleanup(func() { raw.Del(context.Background(), pre+"k") })
	clients := []struct {
		name string
		c    redis.Cmdable
		key  string
		ctx  context.Context
	}{
		{"raw", raw, pre + "k", context.Background()},
		{"confined", conf, "k", ctx},
	}
	for _, cl := range clients {
		cl.c.Set(cl.ctx, cl.key, "v", 0)
	}
	for _, cl := range clients {
		b.Run("op=get/client="+cl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := cl.c.Get(cl.ctx, cl.key).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, cl := range clients {
		b.Run("op=set/client="+cl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := cl.c.Set(cl.ctx, cl.key, "v", 0).Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, cl := range clients {
		b.Run("op=get-parallel/client="+cl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := cl.c.Get(cl.ctx, cl.key).Err(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	for _, cl := range clients {
		b.Run("op=pipeline10/client="+cl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, err := cl.c.Pipelined(cl.ctx, func(p redis.Pipeliner) error {
					for range 10 {
						p.Set(cl.ctx, cl.key, "v", 0)
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
