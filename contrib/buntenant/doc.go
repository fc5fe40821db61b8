// Package buntenant runs bun (github.com/uptrace/bun) over a pgtenant pool,
// so that every query bun sends runs in the tenant's scope of its context.
//
//	db := buntenant.Open(pool)
//	_, err := db.NewInsert().Model(&Note{Body: "hi"}).Returning("*").Exec(tenant.NewContext(ctx, t))
//
// bun passes the context of Exec, Scan and RunInTx to the driver: it must
// carry the tenant (the middleware puts it there). A query without one fails
// with tenant.ErrNoTenant — never "all rows".
//
// # Models
//
// The tenant_id column is filled by the database (its default is the
// tenant of the statement's scope, and the policy checks it): mark it
// nullzero, so that bun sends DEFAULT for the empty value, and read it back
// with Returning. Ids are identity columns (no sequence privilege needed;
// provision and migrate refuse serial):
//
//	type Note struct {
//		bun.BaseModel `bun:"table:notes"`
//		ID       int64  `bun:",pk,autoincrement"`
//		TenantID string `bun:",nullzero"`
//		Body     string
//	}
//
// Without nullzero bun inserts an empty tenant_id and the policy's WITH CHECK
// refuses the row (42501).
//
// # Migrations
//
// Do not create tables with bun's NewCreateTable: the app role may not, and
// the owner would make tables without row level security. Write goose SQL
// files for migrate, which confines every new table of every tenant schema
// (TestBun builds its tenants' schemas that way).
package buntenant
