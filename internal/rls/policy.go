package rls

import "strings"

// The states tenancy.tenant_policies gives a table: what its policies mean,
// whatever they are called.
const (
	// PolicyNone: no tenant policy, and no permissive policy of another
	// kind (restrictive ones only narrow access). Securing installs the
	// tenant policy.
	PolicyNone = "none"
	// PolicyOurs: a policy means what TableSQL installs for the table's
	// pinned tenant (FOR ALL, permissive, to PUBLIC or the app role, USING
	// and WITH CHECK both the tenant match), and no other permissive
	// policy sits beside it.
	PolicyOurs = "ours"
	// PolicyAltered: a policy carries the tenant policy's name but not its
	// meaning (another expression, command, role or RESTRICTIVE).
	PolicyAltered = "altered"
	// PolicyExtra: another permissive policy, which widens what the tenant
	// policy allows (permissive policies are ORed).
	PolicyExtra = "extra"
)

// PoliciesFunction names the server function that classifies the policies
// of tables by their meaning; PoliciesDDL creates it.
const PoliciesFunction = "tenancy.tenant_policies(oid[],text[],text,text,text[])"

// PoliciesDDL creates tenancy.tenant_policies and tenancy.tenant_policy_form
// when they are missing (provision's registry and migrate's version summary
// both run it, under SchemaLock). They are the one definition of "the tenant
// policy": tenancy.schema_plan (provision's securing step), RelationsSQL
// (rls.Plan, migrate's goose path and fleet runner) and provision's Audit
// all decide through them.
//
// tenancy.tenant_policies(rels, pins, setting, app_role, forms) returns, for each
// table rels[i] pinned to tenant pins[i] ("" for a shared table), its state
// (PolicyNone, PolicyOurs, PolicyAltered, PolicyExtra), the name of the
// tenant policy found, and in detail what was found instead of it (each offending
// policy as "policy <name>: [AS RESTRICTIVE] FOR <cmd> TO <roles> USING
// (...) WITH CHECK (...)").
//
// A policy is compared by what the server holds, never by its name or the
// SQL that made it: pg_get_expr of its USING and WITH CHECK against the
// same of the expression TableSQL installs, which
// tenancy.tenant_policy_form creates on a temporary table (one per column
// type, dropped at the end of the transaction) inside a subtransaction it
// rolls back (the deparsed text depends on the column's
// type in ways no client can predict: casts, domains, varchar's text
// comparison). Both are deparsed under search_path pg_catalog, pg_temp, so
// a function, operator or type shadowing a catalog one prints qualified and
// compares unequal. One probe is made per column type and call: another
// tenant's form is the first one's with the pinned literal replaced, and
// probed afresh when that does not match. forms seeds this with forms the
// caller probed before (Forms), as (type, pin, USING, WITH CHECK)
// quadruples, so that a fleet's securing steps make no probe at all.
//
// The functions are never edited: a change gets new names (and a new
// registry version in provision).
const PoliciesDDL = `DO $ddl$ BEGIN
IF to_regprocedure('` + formFunction + `') IS NULL THEN
CREATE FUNCTION tenancy.tenant_policy_form(p_type text, p_setting text, p_pin text, OUT using_expr text, OUT check_expr text)
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $form$
DECLARE
	v_match text;
	v_probe text;
BEGIN
	IF p_setting !~ '^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$' THEN
		RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('setting %L must look like "prefix.name"', p_setting);
	END IF;
	v_match := 'tenant_id = nullif(current_setting(' || quote_literal(p_setting) || ', true), '''')::' || p_type;
	IF p_pin <> '' THEN
		v_match := v_match || ' AND tenant_id = ' || quote_literal(p_pin) || '::' || p_type;
	END IF;
	-- One probe table per column type and transaction (dropped at its
	-- end), outside the subtransaction: making a table costs more than the
	-- policy, and a migration's securing step asks more than once.
	v_probe := 'tenancy_policy_probe_' || md5(p_type);
	-- A table of that name that is not the probe (another column type,
	-- other columns, policies) is replaced.
	IF (SELECT array_agg(format_type(a.atttypid, a.atttypmod)) FROM pg_attribute a
			WHERE a.attrelid = to_regclass('pg_temp.' || v_probe) AND a.attnum > 0) IS DISTINCT FROM ARRAY[p_type]
		OR EXISTS (SELECT FROM pg_policy WHERE polrelid = to_regclass('pg_temp.' || v_probe)) THEN
		EXECUTE format('DROP TABLE IF EXISTS pg_temp.%I', v_probe);
		EXECUTE format('CREATE TEMPORARY TABLE %I (tenant_id %s) ON COMMIT DROP', v_probe, p_type);
	END IF;
	BEGIN
		EXECUTE format('CREATE POLICY probe ON pg_temp.%I USING (%s) WITH CHECK (%s)', v_probe, v_match, v_match);
		SELECT pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) INTO using_expr, check_expr
			FROM pg_policy WHERE polrelid = ('pg_temp.' || v_probe)::regclass AND polname = 'probe';
		RAISE EXCEPTION USING ERRCODE = 'TN900'; -- undo the policy, keep the variables
	EXCEPTION
		WHEN SQLSTATE 'TN900' THEN NULL;
		WHEN data_exception THEN using_expr := NULL; check_expr := NULL; -- the pin is no value of the type
	END;
END
$form$;
REVOKE ALL ON FUNCTION tenancy.tenant_policy_form(text, text, text) FROM PUBLIC;
END IF;
IF to_regprocedure('` + PoliciesFunction + `') IS NULL THEN
CREATE FUNCTION tenancy.tenant_policies(p_rels oid[], p_pins text[], p_setting text, p_app_role text, p_forms text[])
	RETURNS TABLE (rel oid, state text, policy text, detail text)
	LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $policies$
DECLARE
	v_app oid := (SELECT oid FROM pg_roles WHERE rolname = p_app_role);
	v_keys text[] := '{}';  -- per column type (and pinned or not): the first pin probed
	v_pins text[] := '{}';
	v_usings text[] := '{}';
	v_checks text[] := '{}';
	v_type text;
	v_pin text;
	v_key text;
	v_k int;
	v_using text;
	v_check text;
	v_probed boolean;
	v_ours boolean;
	v_altered text;
	v_extra text;
	p record;
BEGIN
	-- Forms the caller probed before (tenancy.tenant_policy_form), as
	-- (type, pin, USING, WITH CHECK) quadruples: no probe for their types.
	FOR j IN 0 .. coalesce(cardinality(p_forms), 0) / 4 - 1 LOOP
		v_keys := v_keys || (p_forms[4 * j + 1] || CASE WHEN p_forms[4 * j + 2] = '' THEN ' shared' ELSE ' pinned' END);
		v_pins := v_pins || p_forms[4 * j + 2];
		v_usings := v_usings || p_forms[4 * j + 3];
		v_checks := v_checks || p_forms[4 * j + 4];
	END LOOP;
	FOR i IN 1 .. coalesce(cardinality(p_rels), 0) LOOP
		rel := p_rels[i];
		v_pin := coalesce(p_pins[i], '');
		state := 'none'; policy := ''; detail := '';
		IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = rel) THEN
			RETURN NEXT;
			CONTINUE;
		END IF;
		SELECT format_type(atttypid, atttypmod) INTO v_type FROM pg_attribute WHERE attrelid = rel AND attname = 'tenant_id' AND NOT attisdropped;
		v_using := NULL; v_check := NULL; v_probed := false;
		IF v_type IS NOT NULL THEN
			v_key := v_type || CASE WHEN v_pin = '' THEN ' shared' ELSE ' pinned' END;
			v_k := array_position(v_keys, v_key);
			IF v_k IS NULL THEN
				SELECT f.using_expr, f.check_expr INTO v_using, v_check FROM tenancy.tenant_policy_form(v_type, p_setting, v_pin) f;
				v_probed := true;
				v_keys := v_keys || v_key; v_pins := v_pins || v_pin; v_usings := v_usings || v_using; v_checks := v_checks || v_check;
			ELSIF v_pin = v_pins[v_k] OR v_pin = '' THEN
				v_using := v_usings[v_k]; v_check := v_checks[v_k]; v_probed := true;
			ELSE
				v_using := replace(v_usings[v_k], quote_literal(v_pins[v_k]), quote_literal(v_pin));
				v_check := replace(v_checks[v_k], quote_literal(v_pins[v_k]), quote_literal(v_pin));
			END IF;
		END IF;
		LOOP
			v_ours := false; v_altered := NULL; v_extra := NULL; policy := '';
			FOR p IN SELECT polname, polcmd, polpermissive, polroles,
					pg_get_expr(polqual, polrelid) AS qual, pg_get_expr(polwithcheck, polrelid) AS checks
				FROM pg_policy WHERE polrelid = rel ORDER BY polname
			LOOP
				IF p.polpermissive AND p.polcmd = '*' AND (0 = ANY (p.polroles) OR v_app = ANY (p.polroles))
						AND v_using IS NOT NULL AND p.qual = v_using AND p.checks = v_check THEN
					v_ours := true;
					IF policy = '' THEN policy := p.polname; END IF;
				ELSIF p.polname = '` + PolicyName + `' OR p.polpermissive THEN
					detail := format('policy %I: %sFOR %s TO %s USING (%s) WITH CHECK (%s)', p.polname,
						CASE WHEN p.polpermissive THEN '' ELSE 'AS RESTRICTIVE ' END,
						CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
						CASE WHEN 0 = ANY (p.polroles) THEN 'PUBLIC'
							ELSE (SELECT string_agg(quote_ident(rolname), ', ' ORDER BY rolname) FROM pg_roles WHERE oid = ANY (p.polroles)) END,
						coalesce(p.qual, ''), coalesce(p.checks, ''));
					IF p.polname = '` + PolicyName + `' THEN
						v_altered := concat_ws('; ', v_altered, detail);
					ELSE
						v_extra := concat_ws('; ', v_extra, detail);
					END IF;
				END IF;
			END LOOP;
			-- A form made by replacing the pin that matched nothing is
			-- probed for this pin itself before a policy is called foreign.
			EXIT WHEN v_ours OR v_probed OR v_type IS NULL;
			SELECT f.using_expr, f.check_expr INTO v_using, v_check FROM tenancy.tenant_policy_form(v_type, p_setting, v_pin) f;
			v_probed := true;
		END LOOP;
		state := CASE WHEN v_altered IS NOT NULL THEN 'altered' WHEN v_extra IS NOT NULL THEN 'extra' WHEN v_ours THEN 'ours' ELSE 'none' END;
		detail := concat_ws('; ', v_altered, v_extra);
		IF state <> 'ours' THEN policy := ''; END IF;
		RETURN NEXT;
	END LOOP;
END
$policies$;
REVOKE ALL ON FUNCTION tenancy.tenant_policies(oid[], text[], text, text, text[]) FROM PUBLIC;
END IF;
END $ddl$`

// FormsSQL probes, with tenancy.tenant_policy_form, the tenant policy's
// form for every tenant_id column type of schema's tables, pinned to
// pinnedID: $1 schema (unquoted), $2 setting, $3 pinned ID. Its one row is
// the forms argument of tenancy.tenant_policies (see PoliciesDDL), e.g. for
// a fleet's securing steps: every other tenant's form is this one with the
// pin replaced, which needs no probe.
const FormsSQL = `SELECT coalesce(array_agg(x ORDER BY t.n, u.i), '{}') FROM (
		SELECT row_number() OVER () AS n, typ FROM (SELECT DISTINCT format_type(a.atttypid, a.atttypmod) AS typ
			FROM (SELECT c.oid ` + schemaRelations + ` AND c.relkind IN ('r', 'p')) c
			JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) types) t,
		tenancy.tenant_policy_form(t.typ, $2, $3) f,
		unnest(ARRAY[t.typ, $3, f.using_expr, f.check_expr]) WITH ORDINALITY AS u(x, i)
	WHERE f.using_expr IS NOT NULL`

// The functions PoliciesDDL creates, as to_regprocedure names them.
const formFunction = "tenancy.tenant_policy_form(text,text,text)"

// Body returns the text between the first pair of dollar-quote tags tag
// ("$form$") in sql: what pg_proc.prosrc holds for a function created with
// it. It panics when sql has no such pair (a programming error).
func Body(sql, tag string) string {
	i := strings.Index(sql, "AS "+tag)
	if i < 0 {
		panic("rls: no body quoted with " + tag)
	}
	rest := sql[i+len("AS "+tag):]
	j := strings.Index(rest, tag)
	if j < 0 {
		panic("rls: no end of the body quoted with " + tag)
	}
	return rest[:j]
}

// PolicyFunctions are the functions of PoliciesDDL by regprocedure name,
// with the body (pg_proc.prosrc) each is created with: what the server must
// still hold for the tenant policy's definition to be tenancy's (a function
// replaced by a migration, which runs as the owner of schema tenancy, would
// decide for Audit and the securing steps). provision's Audit compares them.
func PolicyFunctions() map[string]string {
	return map[string]string{
		formFunction:     Body(PoliciesDDL, "$form$"),
		PoliciesFunction: Body(PoliciesDDL, "$policies$"),
	}
}
