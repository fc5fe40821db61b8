package gormtenant_test

import (
	"context"
	"fmt"

	"github.com/tenancykit/tenancy/contrib/gormtenant"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// A handler's query through GORM: the tenant comes from the request's
// context, which the tenant middleware filled.
func ExampleOpen() {
	ctx := context.Background()
	pool, err := pgtenant.New(ctx, pgtenant.Config{ /* PoolConfig of the app role */ })
	if err != nil {
		fmt.Println(err)
		return
	}
	db, err := gormtenant.Open(pool, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	var notes []Note
	err = db.WithContext(tenant.NewContext(ctx, tenant.Tenant{ID: "acme-1", Slug: "acme"})).Order("id").Find(&notes).Error
	fmt.Println(len(notes), err)
}
