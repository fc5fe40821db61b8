// Package contrib holds Tenancy's adapters for web frameworks, in a module
// of their own so that a service that uses none of them gets none of their
// dependencies: gintenant (Gin), echotenant (Echo) and chitenant (chi).
// Each resolves the tenant with tenant.Middleware's rules and responses and
// leaves it where the framework's handlers look for their context.
package contrib
