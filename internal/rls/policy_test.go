package rls_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/internal/testenv"
)

// TestTenantPolicies: tenancy.tenant_policies recognises the policy
// TableSQL installs by its meaning for every column type (where the
// deparsed text differs: casts, domains, varchar compared as text), and
// calls every other spelling what it is, however it is named: another
// expression, command, role, RESTRICTIVE, another tenant's pin, a function
// shadowing current_setting, a permissive policy beside it.
func TestTenantPolicies(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t).NewDatabase(t)
	ctx := context.Background()
	owner := pg.OwnerPool(t)
	const setting = "app.tenant_id"
	app := pgx.Identifier{pg.AppRole}.Sanitize()
	setup := []string{
		"CREATE SCHEMA tenancy",
		rls.PoliciesDDL,
		rls.PoliciesDDL, // a second run finds the functions and leaves them
		"CREATE SCHEMA tenant_p",
		"CREATE DOMAIN tenant_p.tid AS text CHECK (VALUE <> '')",
		// current_setting shadowed in the tenant schema: an expression that
		// resolves to it is not the tenant policy.
		"CREATE FUNCTION tenant_p.current_setting(text, boolean) RETURNS text LANGUAGE sql AS $$SELECT '7'$$",
	}
	type table struct {
		name, colType string
		extra         []string // after the tenant policy, {T} the table
		pin           string   // "" for the pin the test checks with
		want          string
	}
	tables := []table{
		{"t_text", "text", nil, "", rls.PolicyOurs},
		{"t_varchar", "varchar(64)", nil, "", rls.PolicyOurs},
		{"t_char", "character(8)", nil, "", rls.PolicyOurs},
		{"t_domain", "tenant_p.tid", nil, "", rls.PolicyOurs},
		{"t_bigint", "bigint", nil, "", rls.PolicyOurs},
		{"t_restrictive_beside", "text", []string{"CREATE POLICY narrow ON {T} AS RESTRICTIVE USING (true)"}, "", rls.PolicyOurs},
		{"t_twice", "text", []string{"CREATE POLICY copy ON {T} USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::text AND tenant_id = '7'::text) " +
			"WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::text AND tenant_id = '7'::text)"}, "", rls.PolicyOurs},
		{"t_to_app", "text", []string{"ALTER POLICY tenant_isolation ON {T} TO " + app}, "", rls.PolicyOurs},
		{"t_true", "text", []string{"ALTER POLICY tenant_isolation ON {T} USING (true) WITH CHECK (true)"}, "", rls.PolicyAltered},
		{"t_using_only", "text", []string{"ALTER POLICY tenant_isolation ON {T} WITH CHECK (true)"}, "", rls.PolicyAltered},
		{"t_other_pin", "text", nil, "8", rls.PolicyAltered},
		{"t_to_owner", "text", []string{"ALTER POLICY tenant_isolation ON {T} TO " + pgx.Identifier{pg.OwnerRole}.Sanitize()}, "", rls.PolicyAltered},
		{"t_shadowed", "text", []string{"ALTER POLICY tenant_isolation ON {T} USING (tenant_id = nullif(tenant_p.current_setting('app.tenant_id', true), '')::text AND tenant_id = '7'::text)"}, "", rls.PolicyAltered},
		{"t_select_only", "text", []string{"DROP POLICY tenant_isolation ON {T}", "CREATE POLICY tenant_isolation ON {T} FOR SELECT USING (true)"}, "", rls.PolicyAltered},
		{"t_restrictive", "text", []string{"DROP POLICY tenant_isolation ON {T}", "CREATE POLICY tenant_isolation ON {T} AS RESTRICTIVE USING (true)"}, "", rls.PolicyAltered},
		{"t_extra", "text", []string{"CREATE POLICY everyone ON {T} FOR SELECT USING (true)"}, "", rls.PolicyExtra},
		{"t_only_restrictive", "text", []string{"DROP POLICY tenant_isolation ON {T}", "CREATE POLICY narrow ON {T} AS RESTRICTIVE USING (true)"}, "", rls.PolicyNone},
		{"t_none", "text", []string{"DROP POLICY tenant_isolation ON {T}"}, "", rls.PolicyNone},
	}
	for _, tb := range tables {
		name := pgx.Identifier{"tenant_p", tb.name}.Sanitize()
		pin := tb.pin
		if pin == "" {
			pin = "7"
		}
		setup = append(setup, "CREATE TABLE "+name+" (tenant_id "+tb.colType+")")
		setup = append(setup, rls.TableSQL("tenant_p", tb.name, tb.colType, setting, pin)...)
		for _, e := range tb.extra {
			setup = append(setup, strings.ReplaceAll(e, "{T}", name))
		}
	}
	for _, s := range setup {
		if _, err := owner.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	rels, err := rls.Relations(ctx, owner, "tenant_p", setting, pg.AppRole, "7", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rels {
		got[r.Name] = r.Policy
		if (r.Policy == rls.PolicyAltered || r.Policy == rls.PolicyExtra) && !strings.Contains(r.Found, "policy ") {
			t.Errorf("%s: %s without what was found: %q", r.Name, r.Policy, r.Found)
		}
	}
	want := map[string]string{}
	for _, tb := range tables {
		want[tb.name] = tb.want
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	// One call over many tenants' tables: the pin of each, probed once per
	// column type and replaced for the others, gives the same answers.
	rows, _ := owner.Query(ctx, `SELECT p.rel::regclass::text, p.state FROM tenancy.tenant_policies(
			ARRAY['tenant_p.t_text'::regclass, 'tenant_p.t_other_pin'::regclass, 'tenant_p.t_varchar'::regclass, 'tenant_p.t_bigint'::regclass]::oid[],
			ARRAY['7', '8', '9', '7'], $1, $2, '{}') p`, setting, pg.AppRole)
	states := map[string]string{}
	var rel, state string
	if _, err := pgx.ForEachRow(rows, []any{&rel, &state}, func() error { states[rel] = state; return nil }); err != nil {
		t.Fatal(err)
	}
	wantStates := map[string]string{"tenant_p.t_text": rls.PolicyOurs, "tenant_p.t_other_pin": rls.PolicyOurs,
		"tenant_p.t_varchar": rls.PolicyAltered, "tenant_p.t_bigint": rls.PolicyOurs}
	if diff := cmp.Diff(wantStates, states); diff != "" {
		t.Errorf("per-table pins (-want +got):\n%s", diff)
	}
	// Forms probed before (rls.FormsSQL, pinned to another tenant) give the
	// same answers with no probe at all: no probe table appears in the
	// transaction, as one does without them.
	var forms []string
	if err := owner.QueryRow(ctx, rls.FormsSQL, "tenant_p", setting, "9").Scan(&forms); err != nil {
		t.Fatal(err)
	}
	if len(forms) != 5*4 {
		t.Errorf("forms for 5 column types: %q", forms)
	}
	for _, seeded := range []bool{true, false} {
		tx, err := owner.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var f []string
		if seeded {
			f = forms
		}
		rels, err := rls.Relations(ctx, tx, "tenant_p", setting, pg.AppRole, "7", f)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, r := range rels {
			got[r.Name] = r.Policy
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("seeded %v: states (-want +got):\n%s", seeded, diff)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		// A tenant whose policy is the tenant policy: the seeded form, its
		// pin replaced, confirms it without a probe.
		tx, err = owner.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var state string
		var probed bool
		if err := tx.QueryRow(ctx, `SELECT p.state, to_regclass('pg_temp.tenancy_policy_probe_' || md5('text')) IS NOT NULL
			FROM tenancy.tenant_policies(ARRAY['tenant_p.t_text'::regclass]::oid[], ARRAY['7'], $1, $2, $3) p`, setting, pg.AppRole, f).Scan(&state, &probed); err != nil {
			t.Fatal(err)
		}
		if state != rls.PolicyOurs || probed == seeded {
			t.Errorf("seeded %v: %s, probed %v", seeded, state, probed)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing of the probes is left.
	var temp int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname LIKE 'tenancy\_policy\_probe%'`).Scan(&temp); err != nil || temp != 0 {
		t.Errorf("%d probe tables left (%v)", temp, err)
	}
}
