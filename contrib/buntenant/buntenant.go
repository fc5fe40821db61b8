package buntenant

import (
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// Open returns a *bun.DB over pool (through pgtenant.OpenDB): each of bun's
// statements runs in the scope of the tenant in its context. Closing the
// returned DB does not close pool.
func Open(pool *pgtenant.Pool, opts ...bun.DBOption) *bun.DB {
	return bun.NewDB(pgtenant.OpenDB(pool), pgdialect.New(), opts...)
}
