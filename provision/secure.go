package provision

import (
	"fmt"
	"strings"

	"github.com/tenancykit/tenancy/internal/rls"
)

// secureFunctions is registry version 3: the securing step of Create as
// server-side functions, so that Create sends its DDL, the securing step and
// the registry rows in one round trip (the tables to confine are only known
// once the builder's DDL has run, so the plan has to be made in the server).
//
// tenancy.schema_plan is the server-side twin of rls.Plan over
// rls.Relations: same catalog query, same statements, same order
// (TestServerPlanMatchesGo compares the two on schemas with every kind of
// relation; the golden file testdata/secure_schema_server.golden.sql holds
// its output for the test schema). tenancy.secure_schema refuses what
// rls.Plan's caller refuses, with SQLSTATEs of class TN and the names as a
// JSON array in DETAIL (secureError maps them to this package's errors), and
// then runs the plan: one statement per EXECUTE, as Citus needs for DDL.
//
// Identifiers are always double-quoted, as pgx.Identifier.Sanitize quotes
// them; the setting is checked against Config.Setting's pattern and the
// pinned tenant ID goes through quote_literal. Changing either function
// needs a new registry version (CREATE OR REPLACE), never an edit here.
var secureFunctions = `CREATE FUNCTION tenancy.schema_plan(p_schema text, p_setting text, p_app_role text, p_pinned_id text,
		OUT stmts text[], OUT missing text[], OUT foreign_tables text[], OUT serial text[], OUT twins text[])
	LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $plan$
DECLARE
	r record;
	v_schema text := '"' || replace(p_schema, '"', '""') || '"';
	v_role text := '"' || replace(p_app_role, '"', '""') || '"';
	v_tables text[] := '{}';
	v_name text;
	v_expr text;
	v_match text;
BEGIN
	stmts := '{}'; missing := '{}'; foreign_tables := '{}'; serial := '{}'; twins := '{}';
	IF p_setting !~ '^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$' THEN
		RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('setting %L must look like "prefix.name"', p_setting);
	END IF;
	FOR r IN SELECT c.relname::text AS relname, c.relkind::text AS relkind,
			coalesce(format_type(a.atttypid, a.atttypmod), '') AS tenant_type,
			EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) AS has_policy,
			EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = '` + rls.PolicyName + `') AS has_ours,
			ARRAY(SELECT sa.attname::text FROM pg_attrdef ad
				JOIN pg_attribute sa ON sa.attrelid = ad.adrelid AND sa.attnum = ad.adnum AND NOT sa.attisdropped
				WHERE ad.adrelid = c.oid AND pg_get_expr(ad.adbin, ad.adrelid) LIKE 'nextval(%' ORDER BY sa.attnum) AS seq_defaults,
			coalesce((SELECT format('%I.%I', 'public', s.relname) FROM pg_class s
				WHERE s.relname = c.relname AND s.relnamespace = 'public'::regnamespace
					AND s.relkind IN ('r', 'p', 'v', 'm', 'f') LIMIT 1), '') AS twin
		FROM pg_depend d
		JOIN pg_class c ON c.oid = d.objid
		LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_namespace'::regclass
			AND d.refobjid = to_regnamespace(v_schema) AND c.relkind IN ('r', 'p', 'S')
		ORDER BY c.relname
	LOOP
		CASE
		WHEN r.relname IN ('goose_db_version', 'goose_db_version_id_seq') OR r.relkind = 'S' THEN
			NULL;
		WHEN r.tenant_type = '' THEN
			missing := missing || r.relname;
		WHEN r.has_ours THEN
			v_tables := v_tables || r.relname;
		WHEN r.has_policy THEN
			foreign_tables := foreign_tables || r.relname;
		ELSE
			serial := serial || ARRAY(SELECT r.relname || '.' || col FROM unnest(r.seq_defaults) WITH ORDINALITY AS u(col, n) ORDER BY n);
			v_name := v_schema || '."' || replace(r.relname, '"', '""') || '"';
			IF r.twin <> '' THEN
				twins := twins || (v_name || ' (also ' || r.twin || ')');
			END IF;
			v_tables := v_tables || r.relname;
			v_expr := 'nullif(current_setting(''' || p_setting || ''', true), '''')::' || r.tenant_type;
			v_match := 'tenant_id = ' || v_expr;
			IF p_pinned_id <> '' THEN
				v_match := v_match || ' AND tenant_id = ' || quote_literal(p_pinned_id) || '::' || r.tenant_type;
			END IF;
			stmts := stmts || ARRAY[
				'ALTER TABLE ' || v_name || ' ENABLE ROW LEVEL SECURITY',
				'ALTER TABLE ' || v_name || ' FORCE ROW LEVEL SECURITY',
				'CREATE POLICY ` + rls.PolicyName + ` ON ' || v_name || ' USING (' || v_match || ') WITH CHECK (' || v_match || ')',
				'ALTER TABLE ' || v_name || ' ALTER COLUMN tenant_id SET DEFAULT ' || v_expr];
		END CASE;
	END LOOP;
	stmts := stmts || ARRAY['REVOKE ALL ON SCHEMA ' || v_schema || ' FROM PUBLIC', 'GRANT USAGE ON SCHEMA ' || v_schema || ' TO ' || v_role];
	IF cardinality(v_tables) > 0 THEN
		stmts := stmts || ('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE '
			|| (SELECT string_agg(v_schema || '."' || replace(t, '"', '""') || '"', ', ' ORDER BY n) FROM unnest(v_tables) WITH ORDINALITY AS u(t, n))
			|| ' TO ' || v_role);
	END IF;
END
$plan$;
REVOKE ALL ON FUNCTION tenancy.schema_plan(text, text, text, text) FROM PUBLIC;

CREATE FUNCTION tenancy.secure_schema(p_schema text, p_setting text, p_app_role text, p_pinned_id text)
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $secure$
DECLARE
	p record;
	s text;
BEGIN
	SELECT * INTO p FROM tenancy.schema_plan(p_schema, p_setting, p_app_role, p_pinned_id);
	IF cardinality(p.missing) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'TN001', MESSAGE = 'tables without a tenant_id column: ' || array_to_string(p.missing, ', '), DETAIL = array_to_json(p.missing)::text;
	END IF;
	IF cardinality(p.serial) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'TN002', MESSAGE = 'columns with a sequence default: ' || array_to_string(p.serial, ', '), DETAIL = array_to_json(p.serial)::text;
	END IF;
	IF cardinality(p.twins) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'TN003', MESSAGE = 'tenant tables named like a shared table: ' || array_to_string(p.twins, ', '), DETAIL = array_to_json(p.twins)::text;
	END IF;
	IF cardinality(p.foreign_tables) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'TN004', MESSAGE = 'tables with policies of their own: ' || array_to_string(p.foreign_tables, ', '), DETAIL = array_to_json(p.foreign_tables)::text;
	END IF;
	FOREACH s IN ARRAY p.stmts LOOP
		EXECUTE s;
	END LOOP;
END
$secure$;
REVOKE ALL ON FUNCTION tenancy.secure_schema(text, text, text, text) FROM PUBLIC;`

// securePolicies is registry version 4: the tenant policy recognised by
// its meaning. It installs tenancy.tenant_policies (rls.PoliciesDDL) and
// adds tenancy.schema_plan and tenancy.secure_schema taking the forms of
// tenancy.tenant_policies as a fifth argument (the version 3 functions are
// replaced by calls of these with none, so one body of each runs); schema_plan reads rls.RelationsSQL itself (the very
// query rls.Plan reads) and plans as rls.Plan does: tables whose
// policy carries the tenant policy's name but not its meaning, or that have
// another permissive policy, are foreign (tenancy.secure_schema refuses
// them, TN004); tables with the tenant policy whose row level security is
// off get it enabled and forced again.
var securePolicies = rls.PoliciesDDL + `;
CREATE FUNCTION tenancy.schema_plan(p_schema text, p_setting text, p_app_role text, p_pinned_id text, p_forms text[],
		OUT stmts text[], OUT missing text[], OUT foreign_tables text[], OUT serial text[], OUT twins text[])
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $plan$
DECLARE
	r record;
	v_schema text := '"' || replace(p_schema, '"', '""') || '"';
	v_role text := '"' || replace(p_app_role, '"', '""') || '"';
	v_tables text[] := '{}';
	v_revoke text[] := '{}';
	v_name text;
	v_expr text;
	v_match text;
	v_secure text[];
BEGIN
	stmts := '{}'; missing := '{}'; foreign_tables := '{}'; serial := '{}'; twins := '{}';
	IF p_setting !~ '^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$' THEN
		RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('setting %L must look like "prefix.name"', p_setting);
	END IF;
	FOR r IN EXECUTE ` + quoteLiteral(rls.RelationsSQL) + ` USING p_schema, p_setting, p_app_role, p_pinned_id, p_forms
	LOOP
		v_name := v_schema || '."' || replace(r.relname, '"', '""') || '"';
		v_expr := 'nullif(current_setting(''' || p_setting || ''', true), '''')::' || r.tenant_type;
		v_match := 'tenant_id = ' || v_expr;
		IF p_pinned_id <> '' THEN
			v_match := v_match || ' AND tenant_id = ' || quote_literal(p_pinned_id) || '::' || r.tenant_type;
		END IF;
		v_secure := ARRAY['ALTER TABLE ' || v_name || ' ENABLE ROW LEVEL SECURITY', 'ALTER TABLE ' || v_name || ' FORCE ROW LEVEL SECURITY'];
		CASE
		WHEN r.relname IN ('goose_db_version', 'goose_db_version_id_seq') OR r.relkind = 'S' THEN
			NULL;
		WHEN r.tenant_type = '' THEN
			missing := missing || r.relname;
		WHEN r.state IN ('` + rls.PolicyAltered + `', '` + rls.PolicyExtra + `') THEN
			foreign_tables := foreign_tables || (r.relname || ' (' || r.found || ')');
			v_revoke := v_revoke || v_name;
		WHEN r.state = '` + rls.PolicyOurs + `' THEN
			IF NOT r.secured THEN
				stmts := stmts || v_secure;
			END IF;
			v_tables := v_tables || r.relname;
		ELSE
			serial := serial || ARRAY(SELECT r.relname || '.' || col FROM unnest(r.seq_defaults) WITH ORDINALITY AS u(col, n) ORDER BY n);
			IF r.twin <> '' THEN
				twins := twins || (v_name || ' (also ' || r.twin || ')');
			END IF;
			v_tables := v_tables || r.relname;
			stmts := stmts || v_secure || ARRAY[
				'CREATE POLICY ` + rls.PolicyName + ` ON ' || v_name || ' USING (' || v_match || ') WITH CHECK (' || v_match || ')',
				'ALTER TABLE ' || v_name || ' ALTER COLUMN tenant_id SET DEFAULT ' || v_expr];
		END CASE;
	END LOOP;
	stmts := stmts || ARRAY['REVOKE ALL ON SCHEMA ' || v_schema || ' FROM PUBLIC', 'GRANT USAGE ON SCHEMA ' || v_schema || ' TO ' || v_role];
	IF cardinality(v_tables) > 0 THEN
		stmts := stmts || ('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE '
			|| (SELECT string_agg(v_schema || '."' || replace(t, '"', '""') || '"', ', ' ORDER BY n) FROM unnest(v_tables) WITH ORDINALITY AS u(t, n))
			|| ' TO ' || v_role);
	END IF;
	IF cardinality(v_revoke) > 0 THEN
		stmts := stmts || ('REVOKE ALL ON TABLE ' || array_to_string(v_revoke, ', ') || ' FROM PUBLIC, ' || v_role);
	END IF;
END
$plan$;
REVOKE ALL ON FUNCTION tenancy.schema_plan(text, text, text, text, text[]) FROM PUBLIC;
CREATE OR REPLACE FUNCTION tenancy.schema_plan(p_schema text, p_setting text, p_app_role text, p_pinned_id text,
		OUT stmts text[], OUT missing text[], OUT foreign_tables text[], OUT serial text[], OUT twins text[])
	LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $plan4$
	SELECT * FROM tenancy.schema_plan(p_schema, p_setting, p_app_role, p_pinned_id, '{}'::text[])
$plan4$;
CREATE FUNCTION tenancy.secure_schema(p_schema text, p_setting text, p_app_role text, p_pinned_id text, p_forms text[])
	RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $secure$
DECLARE
	p record;
	s text;
BEGIN
	SELECT * INTO p FROM tenancy.schema_plan(p_schema, p_setting, p_app_role, p_pinned_id, p_forms);
	IF cardinality(p.missing) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'TN001', MESSAGE = 'tables without a tenant_id column: ' || array_to_string(p.missing, ', '), DETAIL = array_to_json(p.missing)::text;
	END IF;
	IF cardinality(p.serial) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'TN002', MESSAGE = 'columns with a sequence default: ' || array_to_string(p.serial, ', '), DETAIL = array_to_json(p.serial)::text;
	END IF;
	IF cardinality(p.twins) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'TN003', MESSAGE = 'tenant tables named like a shared table: ' || array_to_string(p.twins, ', '), DETAIL = array_to_json(p.twins)::text;
	END IF;
	IF cardinality(p.foreign_tables) > 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'TN004', MESSAGE = 'tables whose policies are not the tenant policy: ' || array_to_string(p.foreign_tables, '; '), DETAIL = array_to_json(p.foreign_tables)::text;
	END IF;
	FOREACH s IN ARRAY p.stmts LOOP
		EXECUTE s;
	END LOOP;
END
$secure$;
REVOKE ALL ON FUNCTION tenancy.secure_schema(text, text, text, text, text[]) FROM PUBLIC;
CREATE OR REPLACE FUNCTION tenancy.secure_schema(p_schema text, p_setting text, p_app_role text, p_pinned_id text)
	RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $secure4$
	SELECT tenancy.secure_schema(p_schema, p_setting, p_app_role, p_pinned_id, '{}'::text[])
$secure4$`

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// secureSQL confines a tenant schema's new tables and grants the app role:
// $1 schema, $2 setting, $3 app role, $4 the tenant ID tables are pinned to.
const secureSQL = "SELECT tenancy.secure_schema($1, $2, $3, $4)"

// secureError maps tenancy.secure_schema's refusals to this package's
// errors, naming the tables and columns as rls's errors do.
func secureError(err error) error {
	code, names, ok := rls.Refusal(err)
	if !ok {
		return err
	}
	refused := rls.RefusalError(code, names)
	if refused == nil {
		return err
	}
	if sentinel := refusals[code]; sentinel != nil {
		return fmt.Errorf("%w: %w", sentinel, refused)
	}
	return fmt.Errorf("provision: %w", refused)
}

// refusals are this package's sentinels for the securing step's refusals.
var refusals = map[string]error{
	rls.CodeMissing:       ErrMissingTenantColumn,
	rls.CodeSerial:        ErrSequenceDefault,
	rls.CodeTwin:          ErrSharedTwin,
	rls.CodeForeignPolicy: ErrForeignPolicy,
}
