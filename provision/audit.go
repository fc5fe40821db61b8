package provision

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/internal/rolecheck"
	"github.com/tenancykit/tenancy/pgtenant"
)

// Finding is one isolation problem [Registry.Audit] found.
type Finding struct {
	// Check names the rule, e.g. "rls-not-forced".
	Check string
	// Object is the database object, schema-qualified where it has a schema.
	Object string
	// Problem says what is wrong.
	Problem string
	// Fix says how to put it right.
	Fix string
	// Placement names the placement whose database the object is in.
	Placement string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s: %s: %s (fix: %s)", f.Placement, f.Check, f.Object, f.Problem, f.Fix)
}

const systemSchemas = "('pg_catalog', 'information_schema', 'pg_toast', 'tenancy')"

// Audit inspects the database for what would weaken tenant isolation and
// returns one Finding per problem, each naming the object and the fix.
//
// For every tenant table (live tenants' schemas, and Config.SharedTables in
// SharedTables mode): row level security not enabled ("rls-disabled") or
// not forced ("rls-not-forced"); no tenant policy ("no-policy"); a policy
// named tenant_isolation that does not mean what tenancy installs
// ("policy-altered": another USING or WITH CHECK, command, role, AS
// RESTRICTIVE, or another tenant's pin; the Problem shows what the server
// holds); another permissive policy, which widens access
// ("extra-permissive-policy"; RESTRICTIVE policies are fine); a privilege
// granted to PUBLIC ("public-grant"); the app role as owner
// ("app-role-owns-table"). Policies are compared by their meaning as the
// server holds it (pg_get_expr of USING and WITH CHECK against the
// expression provision and migrate install, for the table's column type
// and tenant), never by name: the same definition Create's and migrate's
// securing steps refuse by.
//
// For the app role: a superuser or BYPASSRLS, CREATEROLE, CREATEDB or
// REPLICATION ("privileged-app-role"), a member of another role
// ("app-role-member"), or new connections that inherit a role or database
// setting that pgtenant.New refuses ("app-role-setting":
// pgtenant.ErrRoleSetting lists them).
//
// Elsewhere: PUBLIC allowed to CREATE in a schema; views without
// security_invoker ("view-not-security-invoker"; in a tenant schema a
// security_barrier view of an owner that cannot bypass row level security
// passes too) and views in a tenant schema that read another schema's
// relations ("view-reaches-other-schema"); SECURITY DEFINER functions;
// registry rows without a schema and tenant schemas without a registry row;
// unique constraints on shared tenant tables that omit tenant_id among their
// key columns (an existence oracle across tenants; INCLUDE columns do not
// count); sequence privileges of the app role and tenant-table columns
// whose default draws from a sequence (sequences are beyond RLS);
// single-column foreign keys between shared tenant tables (an existence
// oracle too); tenant tables named like a relation of the shared schema
// public (one missing migration away from reaching it); tenancy's own
// functions (tenancy.tenant_policies, tenant_policy_form, schema_plan,
// secure_schema) missing or no longer what this version installs
// ("tenancy-function-missing", "tenancy-function-altered": a migration runs
// as the owner of schema tenancy and could replace one; Audit judges the
// tables with its own copy, made in pg_temp, so a replaced one cannot hide
// them). An empty result means none of these was found.
//
// Audit writes nothing that stays: comparing policies makes and drops a
// temporary table inside a subtransaction, so the owner role needs the
// TEMPORARY privilege on the database (PostgreSQL grants it to PUBLIC by
// default).
func (r *Registry) Audit(ctx context.Context) ([]Finding, error) {
	var out []Finding
	for _, name := range r.order {
		p := r.placements[name]
		found, err := p.reg.auditHere(ctx)
		if err != nil {
			return nil, fmt.Errorf("provision: audit placement %q: %w", name, err)
		}
		if !p.local {
			more, err := r.auditPlacement(ctx, p)
			if err != nil {
				return nil, fmt.Errorf("provision: audit placement %q: %w", name, err)
			}
			found = append(found, more...)
		}
		for i := range found {
			found[i].Placement = name
		}
		out = append(out, found...)
	}
	return out, nil
}

// auditHere audits the registry's own database.
func (r *Registry) auditHere(ctx context.Context) ([]Finding, error) {
	var out []Finding
	for _, check := range []func(context.Context) ([]Finding, error){
		r.auditTables, r.auditAppRole, r.auditPublicCreate, r.auditDefiners, r.auditRegistry, r.auditUnique,
		r.auditSequences, r.auditShape, r.auditFunctions,
	} {
		f, err := check(ctx)
		if err != nil {
			return nil, fmt.Errorf("provision: audit: %w", err)
		}
		out = append(out, f...)
	}
	return out, nil
}

func (r *Registry) sharedTables() []string {
	if r.cfg.Mode == pgtenant.SharedTables {
		return r.cfg.SharedTables
	}
	return []string{}
}

// auditTables checks every tenant table (the tables of live tenants'
// schemas, pinned to their tenant, and in SharedTables mode the shared
// tables): row level security enabled and forced, the tenant policy by its
// meaning (tenancy.tenant_policies, the definition the securing step uses),
// no other permissive policy, no privilege granted to PUBLIC, and an owner
// other than the app role.
//
// The meaning is decided by Audit's own copy of tenancy.tenant_policies,
// made in pg_temp for this transaction and rolled back with it, so a copy
// in schema tenancy that a migration replaced cannot hide a table
// (auditFunctions reports the replacement).
// auditPlacement compares the registry's directory with another
// placement's own registry: a tenant the registry places there must be live
// there ("placement-row-missing"), and a live tenant there must be placed
// there or moving there ("placement-row-unplaced": a move's leftover, or a
// tenant created in that database behind the registry's back).
func (r *Registry) auditPlacement(ctx context.Context, p *placed) ([]Finding, error) {
	rows, _ := r.cfg.Owner.Query(ctx, `SELECT id, slug FROM tenancy.tenants
		WHERE status IN ('active', 'suspended') AND placement = $1 ORDER BY slug`, p.Name)
	placedHere, err := pgx.CollectRows(rows, pgx.RowToStructByPos[tenantRow])
	if err != nil {
		return nil, err
	}
	rows, _ = r.cfg.Owner.Query(ctx, `SELECT id, slug FROM tenancy.tenants
		WHERE status <> 'deleted' AND (placement = $1 OR move_to = $1 OR move_from = $1)`, p.Name)
	expected, err := pgx.CollectRows(rows, pgx.RowToStructByPos[tenantRow])
	if err != nil {
		return nil, err
	}
	rows, _ = p.Owner.Query(ctx, `SELECT id, slug FROM tenancy.tenants WHERE status IN ('active', 'suspended') AND placement = '' ORDER BY slug`)
	there, err := pgx.CollectRows(rows, pgx.RowToStructByPos[tenantRow])
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, t := range placedHere {
		if !slices.Contains(there, t) {
			out = append(out, Finding{"placement-row-missing", fmt.Sprintf("tenant %q", t.Slug),
				"the registry places the tenant here, but this database's registry has no live row for it (its data may be gone)",
				"restore the tenant in this placement, or Delete it", ""})
		}
	}
	for _, t := range there {
		if !slices.Contains(expected, t) {
			out = append(out, Finding{"placement-row-unplaced", fmt.Sprintf("tenant %q", t.Slug),
				"this database holds a live tenant the registry does not place here (a crashed move's copy, or a tenant made here directly)",
				"run the Move again to finish it, or remove the copy once you know it holds nothing you need", ""})
		}
	}
	return out, nil
}

// tenantRow is a tenant's ID and slug as a registry lists them.
type tenantRow struct{ ID, Slug string }

func (r *Registry) auditTables(ctx context.Context) (out []Finding, err error) {
	tx, err := r.cfg.Owner.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := rls.ExecEach(ctx, tx.Conn().PgConn(), []string{strings.ReplaceAll(rls.PoliciesDDL, "tenancy.", "pg_temp.")}); err != nil {
		return nil, fmt.Errorf("make the policy functions in pg_temp: %w", err)
	}
	rows, _ := tx.Query(ctx, `WITH rels AS MATERIALIZED (
			SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name, c.relrowsecurity, c.relforcerowsecurity,
				pg_get_userbyid(c.relowner) = $2 AS app_owns, t.id AS pin,
				coalesce((SELECT string_agg(DISTINCT a.privilege_type, ', ') FROM aclexplode(c.relacl) a WHERE a.grantee = 0), '') AS public_privs
			FROM tenancy.tenants t
			JOIN pg_namespace n ON n.nspname = t.schema_name AND t.placement = ''
			JOIN pg_class c ON c.relnamespace = n.oid
			WHERE t.status IN ('active', 'suspended') AND c.relkind IN ('r', 'p')
				-- goose's version table in a tenant schema is the owner's
				-- bookkeeping, never confined (see migrate): reported only
				-- if the app role can reach it.
				AND NOT (c.relname = 'goose_db_version' AND NOT has_table_privilege(
					(SELECT oid FROM pg_roles WHERE rolname = $2), c.oid, 'SELECT, INSERT, UPDATE, DELETE'))
			UNION ALL
			SELECT c.oid, format('%I.%I', n.nspname, c.relname), c.relrowsecurity, c.relforcerowsecurity,
				pg_get_userbyid(c.relowner) = $2, '',
				coalesce((SELECT string_agg(DISTINCT a.privilege_type, ', ') FROM aclexplode(c.relacl) a WHERE a.grantee = 0), '')
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.oid IN (SELECT to_regclass(x) FROM unnest($3::text[]) x)),
		policies AS MATERIALIZED (
			SELECT p.* FROM (SELECT array_agg(oid ORDER BY oid) AS oids, array_agg(pin ORDER BY oid) AS pins FROM rels) x,
				pg_temp.tenant_policies(x.oids, x.pins, $1, $2, '{}') p)
		SELECT r.name, r.relrowsecurity, r.relforcerowsecurity, coalesce(p.state, ''), coalesce(p.detail, ''), r.app_owns, r.public_privs
		FROM rels r LEFT JOIN policies p ON p.rel = r.oid
		ORDER BY 1`, r.cfg.Setting, r.cfg.AppRole, r.sharedTables())
	var name, state, found, publicPrivs string
	var enabled, forced, appOwns bool
	_, err = pgx.ForEachRow(rows, []any{&name, &enabled, &forced, &state, &found, &appOwns, &publicPrivs}, func() error {
		if !enabled {
			out = append(out, Finding{"rls-disabled", name, "row level security is not enabled: every tenant's rows are visible", "ALTER TABLE " + name + " ENABLE ROW LEVEL SECURITY", ""})
		}
		if !forced {
			out = append(out, Finding{"rls-not-forced", name, "row level security is not forced: the table owner bypasses it", "ALTER TABLE " + name + " FORCE ROW LEVEL SECURITY", ""})
		}
		switch state {
		case rls.PolicyNone:
			out = append(out, Finding{"no-policy", name, "the " + PolicyName + " policy is missing", "recreate it as provision does (USING and WITH CHECK on tenant_id)", ""})
		case rls.PolicyAltered:
			out = append(out, Finding{"policy-altered", name, "the " + PolicyName + " policy is not the one tenancy installs: " + found, "DROP POLICY " + PolicyName + " ON " + name + " and recreate it as provision does (USING and WITH CHECK on tenant_id, pinned to the tenant)", ""})
		case rls.PolicyExtra:
			out = append(out, Finding{"extra-permissive-policy", name, "another permissive policy widens the tenant policy (permissive policies are ORed): " + found, "drop it, or make it AS RESTRICTIVE", ""})
		}
		if publicPrivs != "" {
			out = append(out, Finding{"public-grant", name, "PUBLIC holds " + publicPrivs + " on it: every role may use it, not only the app role", "REVOKE ALL ON TABLE " + name + " FROM PUBLIC", ""})
		}
		if appOwns {
			out = append(out, Finding{"app-role-owns-table", name, "the app role owns it and can disable its row level security", "ALTER TABLE " + name + " OWNER TO <owner role>", ""})
		}
		return nil
	})
	return out, err
}

func (r *Registry) auditAppRole(ctx context.Context) ([]Finding, error) {
	var super, bypass bool
	var attrs [3]bool // rolecheck.Attributes
	err := r.cfg.Owner.QueryRow(ctx, "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles WHERE rolname = $1", r.cfg.AppRole).
		Scan(&super, &bypass, &attrs[0], &attrs[1], &attrs[2])
	if err == pgx.ErrNoRows {
		return []Finding{{"app-role-missing", r.cfg.AppRole, "the app role does not exist", "CREATE ROLE ... NOSUPERUSER NOBYPASSRLS", ""}}, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Finding
	quoted := pgx.Identifier{r.cfg.AppRole}.Sanitize()
	for i, a := range rolecheck.Attributes {
		if attrs[i] && !super {
			out = append(out, Finding{"privileged-app-role", r.cfg.AppRole, "the app role has " + a.Name + ": " + a.Why, "ALTER ROLE " + quoted + " NO" + a.Name, ""})
		}
	}
	// Settings every new connection of the app role inherits: pgtenant.New
	// refuses them, and the pool's new connections fail while they stay.
	rows, _ := r.cfg.Owner.Query(ctx, "SELECT s.*, current_database() FROM ("+rolecheck.SettingsSQL("$1")+") s", r.cfg.AppRole)
	var set rolecheck.Setting
	var db string
	if _, err := pgx.ForEachRow(rows, []any{&set.Scope, &set.Name, &set.Value, &db}, func() error {
		why := rolecheck.Unsafe(set, r.cfg.Setting)
		if why == "" {
			return nil
		}
		fix := "ALTER ROLE " + quoted
		switch set.Scope {
		case "role in database":
			fix += " IN DATABASE " + pgx.Identifier{db}.Sanitize()
		case "database":
			fix = "ALTER DATABASE " + pgx.Identifier{db}.Sanitize()
		}
		out = append(out, Finding{"app-role-setting", r.cfg.AppRole, "new connections start with " + set.String() + ": " + why, fix + " RESET " + set.Name, ""})
		return nil
	}); err != nil {
		return nil, err
	}
	if super {
		out = append(out, Finding{"privileged-app-role", r.cfg.AppRole, "the app role is a superuser and bypasses every policy", "ALTER ROLE " + pgx.Identifier{r.cfg.AppRole}.Sanitize() + " NOSUPERUSER", ""})
	}
	if bypass {
		out = append(out, Finding{"privileged-app-role", r.cfg.AppRole, "the app role has BYPASSRLS", "ALTER ROLE " + pgx.Identifier{r.cfg.AppRole}.Sanitize() + " NOBYPASSRLS", ""})
	}
	// A member of another role can SET ROLE to it, and with INHERIT holds
	// its privileges (its tables, if it owns any, are beyond forced RLS
	// only for their owner, but its grants apply to every tenant).
	var groups []string
	if err := r.cfg.Owner.QueryRow(ctx, `SELECT coalesce(array_agg(quote_ident(g.rolname) ORDER BY g.rolname), '{}')
		FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
		WHERE u.rolname = $1`, r.cfg.AppRole).Scan(&groups); err != nil {
		return nil, err
	}
	if len(groups) > 0 {
		list := strings.Join(groups, ", ")
		out = append(out, Finding{"app-role-member", r.cfg.AppRole, "the app role is a member of " + list + ": it can SET ROLE to them and holds their privileges, in every tenant's scope", "REVOKE " + list + " FROM " + pgx.Identifier{r.cfg.AppRole}.Sanitize() + " (the app role should be a member of no role)", ""})
	}
	return out, nil
}

func (r *Registry) auditPublicCreate(ctx context.Context) ([]Finding, error) {
	rows, _ := r.cfg.Owner.Query(ctx, `SELECT quote_ident(n.nspname) FROM pg_namespace n,
			aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
		WHERE a.grantee = 0 AND a.privilege_type = 'CREATE' AND n.nspname NOT IN `+systemSchemas+` AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 1`)
	return collectFindings(rows, func(q string) Finding {
		return Finding{"public-create", q, "PUBLIC may create objects here, e.g. a function or table that shadows a tenant's", "REVOKE CREATE ON SCHEMA " + q + " FROM PUBLIC", ""}
	})
}

// extensionMember is SQL that is true when the object (catalog, oid)
// belongs to an extension (pg_stat_statements' views, Citus's views and
// functions): the extension's, reviewed with it, not the application's.
func extensionMember(catalog, oid string) string {
	return "EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = " + catalog + " AND e.objid = " + oid + " AND e.deptype = 'e')"
}

func (r *Registry) auditDefiners(ctx context.Context) ([]Finding, error) {
	rows, _ := r.cfg.Owner.Query(ctx, `SELECT 'view', format('%I.%I', n.nspname, c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'v' AND n.nspname NOT IN `+systemSchemas+` AND n.nspname NOT LIKE 'pg\_%'
			AND NOT coalesce(c.reloptions && ARRAY['security_invoker=true', 'security_invoker=on', 'security_invoker=1', 'security_invoker=yes'], false)
			-- In a tenant schema a security_barrier view of an owner that
			-- cannot bypass row level security reads under the caller's
			-- tenant setting too (the tables' RLS is forced, for the owner
			-- as well).
			AND NOT (n.nspname IN (SELECT schema_name FROM tenancy.tenants WHERE status IN ('active', 'suspended') AND placement = '')
				AND coalesce(c.reloptions && ARRAY['security_barrier=true', 'security_barrier=on', 'security_barrier=1', 'security_barrier=yes'], false)
				AND NOT EXISTS (SELECT FROM pg_roles o WHERE o.oid = c.relowner AND (o.rolsuper OR o.rolbypassrls)))
			AND NOT `+extensionMember("'pg_class'::regclass", "c.oid")+`
		UNION ALL
		SELECT 'function', format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE p.prosecdef AND n.nspname NOT IN `+systemSchemas+` AND n.nspname NOT LIKE 'pg\_%'
			AND NOT `+extensionMember("'pg_proc'::regclass", "p.oid")+`
		UNION ALL
		-- A view in a tenant schema reads its own schema only (and the
		-- system catalogs): one over another tenant's tables, or a shared
		-- one, carries rows across schemas.
		SELECT DISTINCT 'reach', format('%I.%I (reads %I.%I)', vn.nspname, v.relname, rn.nspname, t.relname)
		FROM pg_class v
		JOIN pg_namespace vn ON vn.oid = v.relnamespace
		JOIN pg_rewrite w ON w.ev_class = v.oid
		JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid AND d.refclassid = 'pg_class'::regclass
		JOIN pg_class t ON t.oid = d.refobjid
		JOIN pg_namespace rn ON rn.oid = t.relnamespace
		WHERE v.relkind IN ('v', 'm') AND t.oid <> v.oid AND rn.oid <> vn.oid
			AND vn.nspname IN (SELECT schema_name FROM tenancy.tenants WHERE status IN ('active', 'suspended') AND placement = '')
			AND rn.nspname NOT IN ('pg_catalog', 'information_schema')
		ORDER BY 1, 2`)
	var out []Finding
	var kind, name string
	_, err := pgx.ForEachRow(rows, []any{&kind, &name}, func() error {
		if kind == "reach" {
			view, _, _ := strings.Cut(name, " (")
			out = append(out, Finding{"view-reaches-other-schema", name, "a view in a tenant schema reads relations of another schema: rows cross the tenant's boundary through it", "DROP VIEW " + view + ", or define it over the tenant's own tables", ""})
		} else if kind == "view" {
			out = append(out, Finding{"view-not-security-invoker", name, "the view reads tables with its owner's rights, not the caller's", "ALTER VIEW " + name + " SET (security_invoker = true)", ""})
		} else {
			out = append(out, Finding{"security-definer-function", name, "the function runs with its owner's rights and can read across tenants", "ALTER FUNCTION " + name + " SECURITY INVOKER, or review it", ""})
		}
		return nil
	})
	return out, err
}

func (r *Registry) auditRegistry(ctx context.Context) ([]Finding, error) {
	rows, _ := r.cfg.Owner.Query(ctx, `SELECT 'row', slug, schema_name FROM tenancy.tenants
		WHERE status IN ('active', 'suspended') AND placement = '' AND schema_name IS NOT NULL AND to_regnamespace(quote_ident(schema_name)) IS NULL
		UNION ALL
		SELECT 'schema', '', quote_ident(nspname) FROM pg_namespace
		WHERE nspname LIKE 'tenant\_%' AND nspname NOT IN (SELECT schema_name FROM tenancy.tenants
			WHERE status <> 'deleted' AND schema_name IS NOT NULL
				-- a move's target or source here holds the schema too
				AND (placement = '' OR move_to = $1 OR move_from = $1))
		ORDER BY 1, 3`, r.cfg.PlacementName)
	var out []Finding
	var kind, slug, schema string
	_, err := pgx.ForEachRow(rows, []any{&kind, &slug, &schema}, func() error {
		if kind == "row" {
			out = append(out, Finding{"registry-without-schema", fmt.Sprintf("tenant %q", slug), "the tenant is live but its schema " + schema + " is gone", "Delete the tenant, or restore the schema", ""})
		} else {
			q := schema // already quoted by the query
			out = append(out, Finding{"schema-without-registry", q, "a tenant schema that no registry row owns (a half-done create or delete?)", "DROP SCHEMA " + q + " CASCADE, once you know it holds nothing you need", ""})
		}
		return nil
	})
	return out, err
}

func (r *Registry) auditUnique(ctx context.Context) ([]Finding, error) {
	rows, _ := r.cfg.Owner.Query(ctx, `SELECT format('%I.%I (%s)', n.nspname, c.relname, i.relname)
		FROM pg_index x
		JOIN pg_class c ON c.oid = x.indrelid
		JOIN pg_class i ON i.oid = x.indexrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE x.indisunique AND c.relkind IN ('r', 'p')
			AND n.nspname NOT IN `+systemSchemas+` AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT LIKE 'tenant\_%'
			AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
			AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
				AND a.attnum = ANY ((x.indkey::int2[])[0:x.indnkeyatts - 1]))
		ORDER BY 1`)
	return collectFindings(rows, func(name string) Finding {
		return Finding{"unique-without-tenant", name, "a unique index on a shared tenant table omits tenant_id: a conflict tells one tenant that another's value exists", "include tenant_id first in the index, e.g. UNIQUE (tenant_id, ...)", ""}
	})
}

// auditSequences reports sequences the app role may use or read, and
// columns of tenant tables whose default draws from a sequence.
func (r *Registry) auditSequences(ctx context.Context) ([]Finding, error) {
	rows, _ := r.cfg.Owner.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'S' AND n.nspname NOT IN `+systemSchemas+` AND n.nspname NOT LIKE 'pg\_%'
			AND (has_sequence_privilege($1, c.oid, 'USAGE') OR has_sequence_privilege($1, c.oid, 'SELECT')
				OR has_sequence_privilege($1, c.oid, 'UPDATE'))
		ORDER BY 1`, r.cfg.AppRole)
	out, err := collectFindings(rows, func(name string) Finding {
		return Finding{"sequence-privilege", name, "the app role may read or advance this sequence, which RLS does not cover: one tenant sees another's ids (nextval, last_value, lastval())", "REVOKE ALL ON SEQUENCE " + name + " FROM " + pgx.Identifier{r.cfg.AppRole}.Sanitize() + "; use identity columns, which need no privilege", ""}

	})
	if err != nil {
		return nil, err
	}
	rows, _ = r.cfg.Owner.Query(ctx, `SELECT format('%I.%I.%I', n.nspname, c.relname, a.attname)
		FROM pg_attrdef d
		JOIN pg_class c ON c.oid = d.adrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum AND NOT a.attisdropped
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN `+systemSchemas+` AND n.nspname NOT LIKE 'pg\_%'
			AND c.relname <> 'goose_db_version' AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'
			AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant_id' AND NOT t.attisdropped)
		ORDER BY 1`)
	defaults, err := collectFindings(rows, func(name string) Finding {
		return Finding{"sequence-default", name, "a tenant table's column draws from a sequence, which the app role cannot (and must not) use", "ALTER the column to GENERATED BY DEFAULT AS IDENTITY (or a gen_random_uuid() default) and drop the sequence", ""}

	})
	return append(out, defaults...), err
}

// auditShape reports foreign keys of shared tenant tables that leave out
// tenant_id, and tenant tables named like a relation of the shared schema.
func (r *Registry) auditShape(ctx context.Context) ([]Finding, error) {
	rows, _ := r.cfg.Owner.Query(ctx, `SELECT format('%I.%I (%I -> %I.%I)', n.nspname, c.relname, k.conname, fn.nspname, f.relname)
		FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class f ON f.oid = k.confrelid
		JOIN pg_namespace fn ON fn.oid = f.relnamespace
		WHERE k.contype = 'f' AND n.nspname NOT IN `+systemSchemas+` AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT LIKE 'tenant\_%'
			AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
			AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum = ANY (k.conkey))
		ORDER BY 1`)
	out, err := collectFindings(rows, func(name string) Finding {
		return Finding{"foreign-key-without-tenant", name, "a foreign key between shared tenant tables leaves out tenant_id: inserting a child that references another tenant's row is accepted or refused (23503), telling one tenant that the row exists", "make the key composite with tenant_id: FOREIGN KEY (tenant_id, ...) REFERENCES parent (tenant_id, ...), with UNIQUE (tenant_id, ...) on the parent", ""}

	})
	if err != nil {
		return nil, err
	}
	rows, _ = r.cfg.Owner.Query(ctx, `SELECT format('%I.%I (also %I.%I)', n.nspname, c.relname, 'public', c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname LIKE 'tenant\_%' AND c.relkind IN ('r', 'p') AND c.relname <> 'goose_db_version'
			AND EXISTS (SELECT 1 FROM pg_class s WHERE s.relname = c.relname AND s.relnamespace = 'public'::regnamespace
				AND s.relkind IN ('r', 'p', 'v', 'm', 'f'))
		ORDER BY 1`)
	twins, err := collectFindings(rows, func(name string) Finding {
		return Finding{"shared-twin", name, "a tenant table is named like a relation of the shared schema: if the tenant's table is missing (a migration not yet applied), its statements reach the shared one", "rename the tenant table or the shared one", ""}

	})
	return append(out, twins...), err
}

func collectFindings(rows pgx.Rows, f func(string) Finding) ([]Finding, error) {
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	out := make([]Finding, 0, len(names))
	for _, n := range names {
		out = append(out, f(n))
	}
	return out, nil
}

// tenancyFunctions are the server functions the tenant policy's definition
// and the securing step live in, with the bodies this version creates them
// with (pg_proc.prosrc).
func tenancyFunctions() map[string]string {
	out := rls.PolicyFunctions()
	out["tenancy.schema_plan(text,text,text,text,text[])"] = rls.Body(securePolicies, "$plan$")
	out["tenancy.schema_plan(text,text,text,text)"] = rls.Body(securePolicies, "$plan4$")
	out["tenancy.secure_schema(text,text,text,text,text[])"] = rls.Body(securePolicies, "$secure$")
	out["tenancy.secure_schema(text,text,text,text)"] = rls.Body(securePolicies, "$secure4$")
	return out
}

// auditFunctions reports tenancy's own functions that are missing or no
// longer what tenancy installed (body, search_path, SECURITY DEFINER): a
// migration runs as the owner of schema tenancy and could replace one, and
// the securing steps and this Audit decide through them.
func (r *Registry) auditFunctions(ctx context.Context) ([]Finding, error) {
	var names, bodies []string
	for name, body := range tenancyFunctions() {
		names, bodies = append(names, name), append(bodies, body)
	}
	rows, _ := r.cfg.Owner.Query(ctx, `SELECT e.name, p.oid IS NULL,
			coalesce(p.prosrc = e.body AND p.proconfig = ARRAY['search_path=pg_catalog, pg_temp'] AND NOT p.prosecdef, false)
		FROM unnest($1::text[], $2::text[]) AS e(name, body)
		LEFT JOIN pg_proc p ON p.oid = to_regprocedure(e.name)
		ORDER BY 1`, names, bodies)
	var out []Finding
	var name string
	var missing, same bool
	_, err := pgx.ForEachRow(rows, []any{&name, &missing, &same}, func() error {
		switch {
		case missing:
			out = append(out, Finding{"tenancy-function-missing", name, "a function of tenancy's securing step is missing: Create and migrations fail", "restore it from this version of tenancy (provision's registry, internal/rls), e.g. in a fresh database's pg_dump of schema tenancy", ""})
		case !same:
			out = append(out, Finding{"tenancy-function-altered", name, "the function is not the one tenancy installs (its body, search_path or SECURITY DEFINER differ): the securing steps and this Audit decide through it", "find who changed it (a migration runs as the owner of schema tenancy), and restore it from this version of tenancy (provision's registry, internal/rls)", ""})
		}
		return nil
	})
	return out, err
}
