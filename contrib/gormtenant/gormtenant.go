package gormtenant

import (
	"github.com/tenancykit/tenancy/pgtenant"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// Open returns a *gorm.DB over pool (through pgtenant.OpenDB): each of
// GORM's statements runs in the scope of the tenant in its context. cfg may
// be nil. Closing the returned DB's sql.DB does not close pool.
func Open(pool *pgtenant.Pool, cfg *gorm.Config) (*gorm.DB, error) {
	if cfg == nil {
		cfg = &gorm.Config{}
	}
	return gorm.Open(postgres.New(postgres.Config{Conn: pgtenant.OpenDB(pool)}), cfg)
}
