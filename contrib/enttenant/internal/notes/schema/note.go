// Package schema is the ent schema of the notes table the enttenant test
// and doc use: a tenant's table made by migrate, not by ent.
package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// Note holds the schema definition for the Note entity.
type Note struct {
	ent.Schema
}

// Fields of the Note: the id is the table's identity column, tenant_id is
// filled by the database (its default is the statement's tenant) and read
// back, never written by ent.
func (Note) Fields() []ent.Field {
	return []ent.Field{
		field.Int64("id"),
		field.String("tenant_id").Optional().Immutable(),
		field.String("body"),
	}
}
