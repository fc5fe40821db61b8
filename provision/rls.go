package provision

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// PolicyName is the name of the row level security policy Create puts on
// every tenant table.
const PolicyName = "tenant_isolation"

// tenantExpr is the value of the RLS setting cast to the tenant_id column's
// type. nullif makes the empty string that a reset setting reads as match
// nothing: NULL equals no tenant_id.
func tenantExpr(setting, colType string) string {
	return "nullif(current_setting('" + setting + "', true), '')::" + colType
}

// secureTableSQL returns the statements that confine one table to the
// current tenant: RLS enabled and forced (so the owner is bound too), one
// policy for reads and writes, and a tenant_id default so inserts need not
// name it. setting is validated by Config; colType comes from the catalog
// (format_type), already quoted where a type name needs it.
func secureTableSQL(schema, table, colType, setting string) []string {
	name := pgx.Identifier{schema, table}.Sanitize()
	match := "tenant_id = " + tenantExpr(setting, colType)
	return []string{
		"ALTER TABLE " + name + " ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE " + name + " FORCE ROW LEVEL SECURITY",
		"CREATE POLICY " + PolicyName + " ON " + name + " USING (" + match + ") WITH CHECK (" + match + ")",
		"ALTER TABLE " + name + " ALTER COLUMN tenant_id SET DEFAULT " + tenantExpr(setting, colType),
	}
}

// grantSQL returns the grants of a tenant schema to the app role: USAGE on
// the schema, DML on the named tables, USAGE and SELECT on the named
// sequences, nothing to PUBLIC. Naming the objects, rather than GRANT ... ON
// ALL TABLES IN SCHEMA, keeps the cost flat as the catalog grows.
func grantSQL(schema string, tables, sequences []string, appRole string) []string {
	s := pgx.Identifier{schema}.Sanitize()
	role := pgx.Identifier{appRole}.Sanitize()
	out := []string{
		"REVOKE ALL ON SCHEMA " + s + " FROM PUBLIC",
		"GRANT USAGE ON SCHEMA " + s + " TO " + role,
	}
	if len(tables) > 0 {
		out = append(out, "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "+qualified(schema, tables)+" TO "+role)
	}
	if len(sequences) > 0 {
		out = append(out, "GRANT USAGE, SELECT ON SEQUENCE "+qualified(schema, sequences)+" TO "+role)
	}
	return out
}

func qualified(schema string, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{schema, n}.Sanitize()
	}
	return strings.Join(q, ", ")
}
