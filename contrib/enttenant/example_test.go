package enttenant_test

import (
	"context"
	"fmt"

	"github.com/tenancykit/tenancy/contrib/enttenant"
	"github.com/tenancykit/tenancy/contrib/enttenant/internal/notes/ent"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// A handler's query through ent: the tenant comes from the request's
// context, which the tenant middleware filled. (ent is the package your
// ent schema generated.)
func ExampleDriver() {
	ctx := context.Background()
	pool, err := pgtenant.New(ctx, pgtenant.Config{ /* PoolConfig of the app role */ })
	if err != nil {
		fmt.Println(err)
		return
	}
	client := ent.NewClient(ent.Driver(enttenant.Driver(pool)))
	defer client.Close()
	notes, err := client.Note.Query().All(tenant.NewContext(ctx, tenant.Tenant{ID: "acme-1", Slug: "acme"}))
	fmt.Println(len(notes), err)
}
