package redistenant_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func ExampleNew() {
	addr := os.Getenv("REDIS_ADDR") // or Redis on localhost
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		panic(err)
	}
	client := redistenant.New(rc, redistenant.Config{})
	defer client.Close()

	acme, _ := tenant.New("example-acme", "acme")
	globex, _ := tenant.New("example-globex", "globex")
	for _, t := range []tenant.Tenant{acme, globex} {
		_, _ = client.Purge(context.Background(), t) // a clean slate for the example
		defer client.Purge(context.Background(), t)
	}

	// The same code for both tenants; each sees its own "greeting".
	for _, t := range []tenant.Tenant{acme, globex} {
		ctx := tenant.NewContext(context.Background(), t)
		client.Do(ctx, client.B().Set().Key("greeting").Value("hello "+t.Slug).Build())
	}
	for _, t := range []tenant.Tenant{acme, globex} {
		ctx := tenant.NewContext(context.Background(), t)
		v, _ := client.Do(ctx, client.B().Get().Key("greeting").Build()).ToString()
		fmt.Println(v)
	}

	// What the server stores:
	n, _ := rc.Do(context.Background(), rc.B().Exists().Key(redistenant.Prefix(acme)+"greeting").Build()).AsInt64()
	fmt.Println("t:{<acme id>}:greeting exists:", n == 1)

	// No tenant, or a command that reaches across tenants: nothing is sent.
	err = client.Do(context.Background(), client.B().Get().Key("greeting").Build()).Error()
	fmt.Println(err)
	err = client.Do(tenant.NewContext(context.Background(), acme), client.B().Flushall().Build()).Error()
	fmt.Println(errors.Is(err, redistenant.ErrCommandNotAllowed))
	// Output:
	// hello acme
	// hello globex
	// t:{<acme id>}:greeting exists: true
	// tenant: no tenant in context
	// true
}

func ExampleClient_Purge() {
	addr := os.Getenv("REDIS_ADDR") // or Redis on localhost
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		panic(err)
	}
	client := redistenant.New(rc, redistenant.Config{})
	defer client.Close()
	t, _ := tenant.New("example-gone", "gone")
	_, _ = client.Purge(context.Background(), t) // a clean slate for the example
	ctx := tenant.NewContext(context.Background(), t)
	_ = client.MSet(ctx, map[string]string{"a": "1", "b": "2", "c": "3"})

	removed, err := client.Purge(context.Background(), t)
	fmt.Println(removed, err)
	keys, _ := client.Keys(ctx, "*")
	fmt.Println(len(keys))
	// Output:
	// 3 <nil>
	// 0
}

func ExampleClientBuilder() {
	addr := os.Getenv("REDIS_ADDR") // or Redis on localhost
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	acme, _ := tenant.New("example-lock-acme", "acme")
	globex, _ := tenant.New("example-lock-globex", "globex")

	// rueidislock builds its own client and calls it with
	// context.Background(): give it a client bound to the tenant.
	newLocker := func(t tenant.Tenant) rueidislock.Locker {
		l, err := rueidislock.NewLocker(rueidislock.LockerOption{
			ClientOption:  rueidis.ClientOption{InitAddress: []string{addr}},
			ClientBuilder: redistenant.ClientBuilder(t, redistenant.Config{}),
			KeyMajority:   1,
		})
		if err != nil {
			panic(err)
		}
		return l
	}
	acmeLocks, globexLocks := newLocker(acme), newLocker(globex)
	defer acmeLocks.Close()
	defer globexLocks.Close()

	// One lock name is a different lock in each tenant. (The name is new on
	// every run: rueidislock deletes a released lock's key in the background,
	// and closing the locker right after may leave it to expire.)
	name := fmt.Sprintf("nightly-report-%d", time.Now().UnixNano())
	_, releaseAcme, err := acmeLocks.TryWithContext(context.Background(), name)
	fmt.Println("acme locked:", err == nil)
	_, releaseGlobex, err := globexLocks.TryWithContext(context.Background(), name)
	fmt.Println("globex locked:", err == nil)
	_, _, err = acmeLocks.TryWithContext(context.Background(), name)
	fmt.Println("acme again:", errors.Is(err, rueidislock.ErrNotLocked))
	releaseAcme()
	releaseGlobex()
	// Output:
	// acme locked: true
	// globex locked: true
	// acme again: true
}

func ExampleCompat() {
	addr := os.Getenv("REDIS_ADDR") // or Redis on localhost
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		panic(err)
	}
	client := redistenant.New(rc, redistenant.Config{})
	defer client.Close()
	t, _ := tenant.New("example-compat", "compat")
	_, _ = client.Purge(context.Background(), t) // a clean slate for the example
	defer client.Purge(context.Background(), t)

	// go-redis-style code, confined to one tenant.
	h, _ := client.For(t)
	rdb := redistenant.Compat(h)
	ctx := context.Background()
	rdb.Set(ctx, "session:1", "x", 0)
	rdb.Set(ctx, "session:2", "y", 0)
	var keys []string
	for cursor := uint64(0); ; { // every page: the server holds other tenants' keys too
		page, next, _ := rdb.Scan(ctx, cursor, "session:*", 100).Result()
		keys = append(keys, page...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	sort.Strings(keys)
	fmt.Println(keys)                           // the names as written, no prefix
	fmt.Println(rdb.Del(ctx, keys...).Val())    // so they can be passed back
	fmt.Println(rdb.DBSize(ctx).Val())          // this tenant's keys only
	fmt.Println(rdb.FlushAll(ctx).Err() != nil) // refused: it reaches every tenant
	// Output:
	// [session:1 session:2]
	// 2
	// 0
	// true
}
