package redistenant_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

func ExampleNew() {
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{testenv.ExampleRedis()}})
	if err != nil {
		panic(err)
	}
	client := redistenant.New(rc, redistenant.Config{})
	defer client.Close()

	acme, globex := testenv.NewTenant("acme"), testenv.NewTenant("globex")
	defer client.Purge(context.Background(), acme)
	defer client.Purge(context.Background(), globex)

	// The same code for both tenants; each sees its own "greeting".
	for _, t := range []tenant.Tenant{acme, globex} {
		ctx := tenant.NewContext(context.Background(), t)
		client.Do(ctx, client.B().Set().Key("greeting").Value("hello "+t.Slug[:4]).Build())
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
	// hello glob
	// t:{<acme id>}:greeting exists: true
	// tenant: no tenant in context
	// true
}

func ExampleClient_Purge() {
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{testenv.ExampleRedis()}})
	if err != nil {
		panic(err)
	}
	client := redistenant.New(rc, redistenant.Config{})
	defer client.Close()
	t := testenv.NewTenant("gone")
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
