package enttenant

import (
	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/tenancykit/tenancy/pgtenant"
)

// Driver returns an ent driver over pool (through pgtenant.OpenDB): each of
// ent's statements runs in the scope of the tenant in its context. Pass it
// to a generated client with ent.Driver:
//
//	client := ent.NewClient(ent.Driver(enttenant.Driver(pool)))
//
// Closing the driver does not close pool.
func Driver(pool *pgtenant.Pool) *entsql.Driver {
	return entsql.OpenDB(dialect.Postgres, pgtenant.OpenDB(pool))
}
