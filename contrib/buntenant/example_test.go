package buntenant_test

import (
	"context"
	"fmt"

	"github.com/tenancykit/tenancy/contrib/buntenant"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// A handler's query through bun: the tenant comes from the request's
// context, which the tenant middleware filled.
func ExampleOpen() {
	ctx := context.Background()
	pool, err := pgtenant.New(ctx, pgtenant.Config{ /* PoolConfig of the app role */ })
	if err != nil {
		fmt.Println(err)
		return
	}
	db := buntenant.Open(pool)
	var notes []Note
	err = db.NewSelect().Model(&notes).Order("id").Scan(tenant.NewContext(ctx, tenant.Tenant{ID: "acme-1", Slug: "acme"}))
	fmt.Println(len(notes), err)
}
