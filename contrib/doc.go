// Package contrib holds Tenancy's adapters for the libraries Go services
// already use, in a module of their own so that a service that uses none of
// them gets none of their dependencies: gintenant (Gin), echotenant (Echo)
// and chitenant (chi) resolve the tenant with tenant.Middleware's rules and
// responses and leave it where the framework's handlers look for their
// context; gormtenant (GORM), buntenant (bun) and enttenant (ent) run those ORMs
// over a pgtenant pool; goredistenant confines a go-redis client as redistenant
// confines a rueidis one.
package contrib
