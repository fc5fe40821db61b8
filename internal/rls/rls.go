// Package rls writes the row level security SQL that provision applies to a
// new tenant's tables and migrate applies to tables a tenant migration
// creates, so both confine tables the same way.
package rls

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PolicyName is the name of the policy on every tenant table.
const PolicyName = "tenant_isolation"

// SchemaLock is the advisory lock under which provision's registry and
// migrate's version summary create and upgrade their objects in schema
// tenancy: CREATE ... IF NOT EXISTS is not safe against a concurrent creator.
const SchemaLock = int64(0x74656e616e6379) // "tenancy"

// ErrMissingTenantColumn is wrapped by MissingError.
var ErrMissingTenantColumn = errors.New("tables without a tenant_id column")

// TenantExpr is the RLS setting cast to the tenant_id column's type. nullif
// makes the empty string of a reset setting match nothing.
func TenantExpr(setting, colType string) string {
	return "nullif(current_setting('" + setting + "', true), '')::" + colType
}

// TableSQL returns the statements that confine one table: RLS enabled and
// forced, one policy for reads and writes, and a tenant_id default. setting
// must be validated by the caller; colType comes from the catalog.
//
// pinnedID, when set (schema-per-tenant), also pins the table to its own
// tenant: every tenant's app connections may reach every tenant schema, and
// without the pin another tenant could still insert rows of its own into
// this table (invisible here, but taking its keys). It must be a validated
// tenant ID, whose alphabet cannot break out of the literal.
func TableSQL(schema, table, colType, setting, pinnedID string) []string {
	name := pgx.Identifier{schema, table}.Sanitize()
	match := "tenant_id = " + TenantExpr(setting, colType)
	if pinnedID != "" {
		match += " AND tenant_id = '" + pinnedID + "'::" + colType
	}
	return []string{
		"ALTER TABLE " + name + " ENABLE ROW LEVEL SECURITY",
		"ALTER TABLE " + name + " FORCE ROW LEVEL SECURITY",
		"CREATE POLICY " + PolicyName + " ON " + name + " USING (" + match + ") WITH CHECK (" + match + ")",
		"ALTER TABLE " + name + " ALTER COLUMN tenant_id SET DEFAULT " + TenantExpr(setting, colType),
	}
}

// GrantSQL returns the grants of a tenant schema to the app role, naming the
// objects (GRANT ... ON ALL TABLES IN SCHEMA scans the whole catalog).
func GrantSQL(schema string, tables []string, appRole string) []string {
	s := pgx.Identifier{schema}.Sanitize()
	role := pgx.Identifier{appRole}.Sanitize()
	out := []string{
		"REVOKE ALL ON SCHEMA " + s + " FROM PUBLIC",
		"GRANT USAGE ON SCHEMA " + s + " TO " + role,
	}
	if len(tables) > 0 {
		out = append(out, "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "+Qualified(schema, tables)+" TO "+role)
	}
	return out
}

// Qualified joins schema-qualified, quoted names.
func Qualified(schema string, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{schema, n}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// Relation is a table or sequence of a tenant schema.
type Relation struct {
	Name       string
	Kind       string // "r", "p" or "S"
	TenantType string // format_type of tenant_id, "" when absent
	// Policy is what the table's policies mean (PolicyNone, PolicyOurs,
	// PolicyAltered, PolicyExtra: see PoliciesDDL), "" for a sequence.
	Policy string
	// Found describes the policies that are not the tenant policy, for
	// PolicyAltered and PolicyExtra.
	Found string
	// Secured: row level security is enabled and forced.
	Secured bool
	// SequenceDefaults are the columns whose default draws from a sequence
	// (serial, nextval): the app role holds no sequence privileges, so
	// they cannot work for it, and sequences are beyond RLS.
	SequenceDefaults []string
	// SharedTwin is the relation of the same name in the shared schema
	// public ("public.users"), "" when there is none: a statement of a tenant
	// whose table is missing would resolve to it.
	SharedTwin string
}

// Queryer runs a query: a *pgx.Conn, pgxpool.Pool or pgx.Tx.
type Queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Relations lists the tables and sequences of schema through pg_depend,
// which is indexed by the referenced schema (pg_class has no index on
// relnamespace, so scanning it would grow with the fleet), each table with
// what its policies mean for the tenant pinnedID under setting and
// appRole. forms are forms probed before (FormsSQL), or nil. It needs tenancy.tenant_policies (PoliciesDDL), and a
// transaction that may write (its probe makes and drops a temporary table).
func Relations(ctx context.Context, q Queryer, schema, setting, appRole, pinnedID string, forms []string) ([]Relation, error) {
	rows, _ := q.Query(ctx, RelationsSQL, RelationsArgs(schema, setting, appRole, pinnedID, forms)...)
	return ScanRelations(rows)
}

// RelationsSQL is the query of Relations, for callers that send it in a
// pipeline of their own, with RelationsArgs; read its rows with
// ScanRelations.
const RelationsSQL = `WITH rels AS MATERIALIZED (
		SELECT c.oid, c.relname, c.relkind, c.relrowsecurity AND c.relforcerowsecurity AS secured
		` + schemaRelations + ` AND c.relkind IN ('r', 'p', 'S')),
	policies AS MATERIALIZED (
		SELECT p.* FROM (SELECT array_agg(oid ORDER BY oid) AS oids FROM rels WHERE relkind <> 'S') r,
			tenancy.tenant_policies(r.oids, array_fill($4::text, ARRAY[coalesce(cardinality(r.oids), 0)]), $2, $3, $5::text[]) p)
	SELECT c.relname::text AS relname, c.relkind::text AS relkind,
			coalesce(format_type(a.atttypid, a.atttypmod), '') AS tenant_type,
			coalesce(p.state, '') AS state, coalesce(p.detail, '') AS found, c.secured,
			ARRAY(SELECT sa.attname::text FROM pg_attrdef ad
				JOIN pg_attribute sa ON sa.attrelid = ad.adrelid AND sa.attnum = ad.adnum AND NOT sa.attisdropped
				WHERE ad.adrelid = c.oid AND pg_get_expr(ad.adbin, ad.adrelid) LIKE 'nextval(%' ORDER BY sa.attnum) AS seq_defaults,
			coalesce((SELECT format('%I.%I', 'public', s.relname) FROM pg_class s
				WHERE s.relname = c.relname AND s.relnamespace = 'public'::regnamespace
					AND s.relkind IN ('r', 'p', 'v', 'm', 'f') LIMIT 1), '') AS twin
		FROM rels c
		LEFT JOIN policies p ON p.rel = c.oid
		LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		ORDER BY c.relname`

// schemaRelations is the FROM and WHERE clause of the relations c of the
// schema named $1 (unquoted), through pg_depend (see Relations); callers
// add their relkind filter.
const schemaRelations = `FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
		WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_namespace'::regclass
			AND d.refobjid = to_regnamespace(quote_ident($1))`

// PendingSQL is an SQL condition, true when Pending would be for the
// schema's relations as RelationsSQL reads them (same arguments, $1 to $5):
// a table other than goose's whose policies are not the tenant policy by
// meaning or whose row level security is off. It reads only what the
// decision needs, for a server-side securing step.
const PendingSQL = `EXISTS (SELECT FROM (SELECT ARRAY(SELECT c.oid ` + schemaRelations + `
			AND c.relkind IN ('r', 'p') AND c.relname <> 'goose_db_version') AS oids) r,
		tenancy.tenant_policies(r.oids, array_fill($4::text, ARRAY[cardinality(r.oids)]), $2, $3, $5::text[]) p
		JOIN pg_class c ON c.oid = p.rel
		WHERE p.state <> '` + PolicyOurs + `' OR NOT (c.relrowsecurity AND c.relforcerowsecurity))`

// RelationsArgs are the arguments of RelationsSQL: the schema's name
// (unquoted), the setting, the app role, the pinned tenant ID and the forms
// of tenancy.tenant_policies (nil for none).
func RelationsArgs(schema, setting, appRole, pinnedID string, forms []string) []any {
	if forms == nil {
		forms = []string{}
	}
	return []any{schema, setting, appRole, pinnedID, forms}
}

// ScanRelations reads the rows of RelationsSQL.
func ScanRelations(rows pgx.Rows) ([]Relation, error) {
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Relation])
}

// isGoose reports whether name is migrate's bookkeeping in a tenant schema:
// goose's version table and its sequence, the owner's, never the app's.
func isGoose(name string) bool {
	return name == "goose_db_version" || name == "goose_db_version_id_seq"
}

// Pending reports whether rels hold a table that Plan would confine or
// refuse: one without the tenant policy by meaning, with another permissive
// policy, with row level security off or not forced, or without tenant_id.
func Pending(rels []Relation) bool {
	for _, r := range rels {
		if r.Kind != "S" && !isGoose(r.Name) && (r.Policy != PolicyOurs || !r.Secured) {
			return true
		}
	}
	return false
}

// Plan returns the statements that confine every relation of schema that is
// not yet confined, and grant the app role. missing lists tables without a
// tenant_id column; foreign lists tables whose policies are not the tenant
// policy by meaning (PolicyAltered: its name, another meaning) or add a
// permissive policy beside it (PolicyExtra: it would widen access), each as
// "table (what was found)"; the app role loses its privileges on them (a
// migration committed before securing refuses it must not leave one open).
// Tables already carrying the tenant policy are granted, and get row level
// security enabled and forced again if a migration turned it off. goose's
// version table and its sequence are left alone: they belong to the owner.
//
// The app role gets no sequence privileges: sequences are beyond RLS (one
// tenant could read or advance another's, and lastval() carries ids across
// statements). serial lists "table.column" of tables being confined now whose
// column default draws from a sequence; use GENERATED ... AS IDENTITY or
// gen_random_uuid(), which need no privilege. Tables confined before are
// left as they are (Audit reports them).
func Plan(schema string, rels []Relation, setting, appRole, pinnedID string) PlanResult {
	var stmts, missing, foreign, serial, twins, tables, revoke []string
	for _, r := range rels {
		name := pgx.Identifier{schema, r.Name}.Sanitize()
		switch {
		case isGoose(r.Name):
			// The migration bookkeeping of migrate: the owner's, not the app's.
		case r.Kind == "S":
			// No grant: identity columns need none, and serial is refused.
		case r.TenantType == "":
			missing = append(missing, r.Name)
		case r.Policy == PolicyAltered || r.Policy == PolicyExtra:
			foreign = append(foreign, r.Name+" ("+r.Found+")")
			revoke = append(revoke, name)
		case r.Policy == PolicyOurs:
			if !r.Secured {
				stmts = append(stmts, TableSQL(schema, r.Name, r.TenantType, setting, pinnedID)[:2]...)
			}
			tables = append(tables, r.Name)
		default:
			for _, col := range r.SequenceDefaults {
				serial = append(serial, r.Name+"."+col)
			}
			if r.SharedTwin != "" {
				twins = append(twins, name+" (also "+r.SharedTwin+")")
			}
			tables = append(tables, r.Name)
			stmts = append(stmts, TableSQL(schema, r.Name, r.TenantType, setting, pinnedID)...)
		}
	}
	stmts = append(stmts, GrantSQL(schema, tables, appRole)...)
	if len(revoke) > 0 {
		stmts = append(stmts, "REVOKE ALL ON TABLE "+strings.Join(revoke, ", ")+" FROM PUBLIC, "+pgx.Identifier{appRole}.Sanitize())
	}
	return PlanResult{Stmts: stmts, Missing: missing, Foreign: foreign, Serial: serial, Twins: twins}
}

// PlanResult is what Plan found and would run.
type PlanResult struct {
	// Stmts confine the new tables and grant the app role.
	Stmts []string
	// Missing are tables without tenant_id; Foreign, tables whose policies
	// are not the tenant policy by meaning, with what was found; Serial,
	// "table.column" with a sequence default; Twins, new tables named like
	// a relation of the shared schema public.
	Missing, Foreign, Serial, Twins []string
}

// ErrSharedTwin is wrapped by SharedTwinError.
var ErrSharedTwin = errors.New("tenant tables named like a shared table")

// SharedTwinError reports new tenant tables named like a relation of the
// shared schema: one missing migration, and a tenant's statement reaches the
// shared relation instead.
func SharedTwinError(twins []string) error {
	return fmt.Errorf("%w: %s (a tenant whose table is missing would reach the shared one; rename one of them)", ErrSharedTwin, strings.Join(twins, ", "))
}

// ErrSequenceDefault is wrapped by SequenceDefaultError.
var ErrSequenceDefault = errors.New("columns with a sequence default (serial)")

// SequenceDefaultError reports columns whose default draws from a sequence.
func SequenceDefaultError(cols []string) error {
	return fmt.Errorf("%w: %s (the app role holds no sequence privileges, which RLS cannot cover; use GENERATED ALWAYS AS IDENTITY or gen_random_uuid() instead)",
		ErrSequenceDefault, strings.Join(cols, ", "))
}

// MissingError reports tables without tenant_id.
func MissingError(tables []string) error {
	return fmt.Errorf("%w: %s (every tenant table needs one; RLS filters on it)", ErrMissingTenantColumn, strings.Join(tables, ", "))
}

// The SQLSTATEs with which tenancy.secure_schema (provision's registry)
// refuses a schema, the names as a JSON array in DETAIL.
const (
	CodeMissing       = "TN001" // tables without tenant_id
	CodeSerial        = "TN002" // columns with a sequence default
	CodeTwin          = "TN003" // tenant tables named like shared ones
	CodeForeignPolicy = "TN004" // tables with policies of their own
)

// ErrForeignPolicy is wrapped by ForeignPolicyError.
var ErrForeignPolicy = errors.New("tables whose policies are not the tenant policy")

// ForeignPolicyError reports tenant tables whose policies are not the
// tenant policy by meaning: the tenant policy's name on another expression,
// or another permissive policy beside it.
func ForeignPolicyError(tables []string) error {
	return fmt.Errorf("%w: %s (the %s policy must be the one tenancy installs, and no other permissive policy may widen it; leave policies to tenancy, or make yours RESTRICTIVE)",
		ErrForeignPolicy, strings.Join(tables, "; "), PolicyName)
}

// RefusalError is the error for names refused with code (one of the Code
// constants): MissingError, SequenceDefaultError, SharedTwinError or
// ForeignPolicyError. It is nil for any other code.
func RefusalError(code string, names []string) error {
	switch code {
	case CodeMissing:
		return MissingError(names)
	case CodeSerial:
		return SequenceDefaultError(names)
	case CodeTwin:
		return SharedTwinError(names)
	case CodeForeignPolicy:
		return ForeignPolicyError(names)
	}
	return nil
}

// Refusal returns the first thing p refuses, in the order
// tenancy.secure_schema checks them (tables without tenant_id, sequence
// defaults, shared twins, foreign policies): its code and names, or "" when
// p refuses nothing.
func (p PlanResult) Refusal() (code string, names []string) {
	switch {
	case len(p.Missing) > 0:
		return CodeMissing, p.Missing
	case len(p.Serial) > 0:
		return CodeSerial, p.Serial
	case len(p.Twins) > 0:
		return CodeTwin, p.Twins
	case len(p.Foreign) > 0:
		return CodeForeignPolicy, p.Foreign
	}
	return "", nil
}

// Refusal decodes a refusal of tenancy.secure_schema: its code (one of the
// Code constants) and the names it reports. ok is false for any other error.
func Refusal(err error) (code string, names []string, ok bool) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.HasPrefix(pgErr.Code, "TN") {
		return "", nil, false
	}
	if json.Unmarshal([]byte(pgErr.Detail), &names) != nil {
		return "", nil, false
	}
	return pgErr.Code, names, true
}

// ExecEach runs stmts on pc in one round trip, each as an extended-protocol
// query of its own before a single Sync: inside the caller's transaction if
// one is open, else as one implicit transaction. One statement per query
// string is what Citus needs to forward DDL to its workers (a joined string
// fails there); on PostgreSQL it costs the same round trip. The statements
// hold no values, only identifiers quoted by pgx.Identifier and catalog
// types. The first error is returned.
func ExecEach(ctx context.Context, pc *pgconn.PgConn, stmts []string) error {
	if len(stmts) == 0 {
		return nil
	}
	var b pgconn.Batch
	for _, s := range stmts {
		b.ExecParams(s, nil, nil, nil, nil)
	}
	_, err := pc.ExecBatch(ctx, &b).ReadAll()
	return err
}

// CitusInstalled is an SQL condition, true when the database has the citus
// extension: pgtenant, provision and migrate switch to their Citus behaviour
// on it.
const CitusInstalled = "EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus')"

// CitusPropagateSQL makes Citus forward the SET LOCAL statements that follow
// it in an explicit transaction block to the worker nodes the transaction
// reaches; Citus never forwards this setting itself. A setting made with
// set_config stays on the coordinator, where RLS on a distributed table's
// shards never sees it.
const CitusPropagateSQL = "SET LOCAL citus.propagate_set_commands = 'local'"

// CitusSetLocalSQL is "SET LOCAL <setting> = '<id>'", the tenant setting as
// Citus forwards it to the workers (after CitusPropagateSQL, in an explicit
// block, as a query string of its own: Citus forwards the whole string). SET
// takes no parameters, so id is a literal: callers pass a setting that
// matches "prefix.name" and an ID that passed tenant.ValidateID (letters,
// digits, '_', '-'); quotes are doubled all the same.
func CitusSetLocalSQL(setting, id string) string {
	return "SET LOCAL " + setting + " = '" + strings.ReplaceAll(id, "'", "''") + "'"
}
