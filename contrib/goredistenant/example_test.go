package goredistenant_test

import (
	"context"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/contrib/goredistenant"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func Example() {
	addr := testenv.ExampleRedis()
	c := goredistenant.New(redis.NewClient(&redis.Options{Addr: addr}), goredistenant.Config{})
	defer c.Close()
	acme, globex := testenv.NewTenant("acme"), testenv.NewTenant("globex")

	for _, t := range []tenant.Tenant{acme, globex} {
		ctx := tenant.NewContext(context.Background(), t)
		c.Set(ctx, "cart:42", "3 items of "+t.Slug[:4], 0)
	}
	ctx := tenant.NewContext(context.Background(), acme)
	fmt.Println(c.Get(ctx, "cart:42").Val())
	var keys []string
	iter := c.Scan(ctx, 0, "", 100).Iterator() // every page: the server holds other tenants' keys too
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	fmt.Println(keys)

	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	var onServer []string
	for _, t := range []tenant.Tenant{acme, globex} {
		if raw.Exists(context.Background(), redistenant.Prefix(t)+"cart:42").Val() == 1 {
			onServer = append(onServer, "t:{<"+t.Slug[:4]+">}:cart:42")
		}
		raw.Del(context.Background(), redistenant.Prefix(t)+"cart:42")
	}
	sort.Strings(onServer)
	fmt.Println(onServer)

	_, err := c.Get(context.Background(), "cart:42").Result()
	fmt.Println(err)
	// Output:
	// 3 items of acme
	// [cart:42]
	// [t:{<acme>}:cart:42 t:{<glob>}:cart:42]
	// tenant: no tenant in context
}

// ExampleClient_Watch increments a counter in an optimistic transaction.
func ExampleClient_Watch() {
	c := goredistenant.New(redis.NewClient(&redis.Options{Addr: testenv.ExampleRedis()}), goredistenant.Config{})
	defer c.Close()
	t := testenv.NewTenant("acme")
	ctx := tenant.NewContext(context.Background(), t)
	defer c.Del(ctx, "visits")

	incr := func(tx *redis.Tx) error {
		n, err := tx.Get(ctx, "visits").Int()
		if err != nil && err != redis.Nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "visits", n+1, 0)
			return nil
		})
		return err
	}
	for range 3 {
		if err := c.Watch(ctx, incr, "visits"); err != nil {
			fmt.Println(err)
		}
	}
	fmt.Println(c.Get(ctx, "visits").Val())
	// Output: 3
}

// ExampleClient_Subscribe receives a tenant's messages without the prefix.
func ExampleClient_Subscribe() {
	c := goredistenant.New(redis.NewClient(&redis.Options{Addr: testenv.ExampleRedis()}), goredistenant.Config{})
	defer c.Close()
	ctx := tenant.NewContext(context.Background(), testenv.NewTenant("acme"))

	sub := c.Subscribe(ctx, "orders")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		fmt.Println(err)
		return
	}
	c.Publish(ctx, "orders", "order 7 paid")
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(msg.Channel, "|", msg.Payload)
	// Output: orders | order 7 paid
}
