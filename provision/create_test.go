package provision_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
	"github.com/tenancykit/tenancy/tenant"
)

func TestCreateIsolatesTenants(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	reg := newRegistry(t, pg, nil)
	ctx := context.Background()
	a, err := reg.Create(ctx, provision.Spec{Slug: slug("acme"), Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.Create(ctx, provision.Spec{Slug: slug("globex")})
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != provision.StatusActive || a.SchemaName != pgtenant.SchemaName(a.Tenant()) || a.Name != "Acme" {
		t.Errorf("record %+v", a)
	}
	if err := tenant.ValidateID(a.ID); err != nil || len(a.ID) != 36 {
		t.Errorf("generated ID %q: %v", a.ID, err)
	}
	pool := appPool(t, pg, pgtenant.SchemaPerTenant)
	for _, rec := range []provision.Record{a, b} {
		ctx := ctxFor(rec.Tenant())
		// Inserts need not name tenant_id: the default fills it in.
		if _, err := pool.Exec(ctx, "INSERT INTO projects (title) VALUES ($1)", "p-"+rec.Slug); err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range []provision.Record{a, b} {
		ctx := ctxFor(rec.Tenant())
		rows, _ := pool.Query(ctx, "SELECT tenant_id, title FROM projects")
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ TenantID, Title string }])
		if err != nil {
			t.Fatal(err)
		}
		want := []struct{ TenantID, Title string }{{rec.ID, "p-" + rec.Slug}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", rec.Slug, diff)
		}
		// The other tenant's schema, named explicitly, shows nothing.
		other := b
		if rec.ID == b.ID {
			other = a
		}
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{other.SchemaName, "projects"}.Sanitize()).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s reads %d rows of %s (%v)", rec.Slug, n, other.Slug, err)
		}
	}
	// The app role may not change the schema.
	if _, err := pool.Exec(ctxFor(a.Tenant()), "ALTER TABLE projects DISABLE ROW LEVEL SECURITY"); err == nil {
		t.Error("the app role altered a tenant table")
	}
}

func TestFailedDDLLeavesNothing(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	cases := map[string][]string{
		"ddl error":         {`CREATE TABLE ok_table (tenant_id text, x int)`, `CREATE TABLE broken (tenant_id text, x nosuchtype)`},
		"missing tenant_id": {`CREATE TABLE a (x int)`, `CREATE TABLE b (tenant_id text)`, `CREATE TABLE c (y int)`},
	}
	for kase, stmts := range cases {
		for path, builder := range builders(stmts...) {
			name := kase + "/" + path
			reg := newRegistry(t, pg, func(c *provision.Config) { c.Builder = builder })
			s := slug("fail")
			_, err := reg.Create(context.Background(), provision.Spec{Slug: s})
			var se *provision.StepError
			if !errors.As(err, &se) {
				t.Fatalf("%s: %v, want *StepError", name, err)
			}
			switch kase {
			case "ddl error":
				if se.Step != "build schema" || (path != "one string" && !strings.Contains(err.Error(), "statement 2")) {
					t.Errorf("%s: %v", name, err)
				}
			case "missing tenant_id":
				if se.Step != "secure tables" || !errors.Is(err, provision.ErrMissingTenantColumn) || !strings.Contains(err.Error(), "a, c") {
					t.Errorf("%s: %v", name, err)
				}
			}
			if _, err := reg.Get(context.Background(), s); !errors.Is(err, provision.ErrTenantNotFound) {
				t.Errorf("%s: registry row left behind: %v", name, err)
			}
			var exists bool
			if err := pg.OwnerPool(t).QueryRow(context.Background(), "SELECT to_regnamespace($1) IS NOT NULL", "tenant_"+s).Scan(&exists); err != nil || exists {
				t.Errorf("%s: schema left behind (%v)", name, err)
			}
			// The slug is free again.
			reg2 := newRegistry(t, pg, nil)
			if _, err := reg2.Create(context.Background(), provision.Spec{Slug: s}); err != nil {
				t.Errorf("%s: create after failure: %v", name, err)
			}
		}
	}
}

func TestConcurrentCreateOfOneSlug(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	reg := newRegistry(t, pg, nil)
	s := slug("race")
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := reg.Create(context.Background(), provision.Spec{Slug: s})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var ok, exists int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, provision.ErrTenantExists):
			exists++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 1 || exists != n-1 {
		t.Errorf("%d succeeded, %d got ErrTenantExists; want 1 and %d", ok, exists, n-1)
	}
}

func TestSlugRules(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	reg := newRegistry(t, pg, nil)
	ctx := context.Background()
	longest := slug("l")
	longest += strings.Repeat("x", tenant.MaxSlugLen-len(longest))
	rec, err := reg.Create(ctx, provision.Spec{Slug: longest})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.SchemaName) != len("tenant_")+tenant.MaxSlugLen || rec.SchemaName != "tenant_"+longest {
		t.Errorf("schema %q", rec.SchemaName)
	}
	owner := pg.OwnerPool(t)
	for _, bad := range []string{"public", "tenancy", "Acme", "a-b", `x"; DROP SCHEMA public; --`, "", strings.Repeat("y", tenant.MaxSlugLen+1), "ünï"} {
		_, err := reg.Create(ctx, provision.Spec{Slug: bad})
		if !errors.Is(err, tenant.ErrInvalidSlug) {
			t.Errorf("slug %q: %v, want ErrInvalidSlug", bad, err)
		}
	}
	if _, err := reg.Create(ctx, provision.Spec{Slug: slug("okslug"), ID: "bad:id"}); !errors.Is(err, tenant.ErrInvalidID) {
		t.Errorf("bad ID: %v", err)
	}
	// Validation happens before any SQL: no row was written for any of them.
	var n int
	if err := owner.QueryRow(ctx, "SELECT count(*) FROM tenancy.tenants WHERE slug IN ('public', 'tenancy', 'Acme', 'a-b')").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d rows for rejected slugs (%v)", n, err)
	}
	if _, err := reg.Create(ctx, provision.Spec{Slug: longest}); !errors.Is(err, provision.ErrTenantExists) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := reg.Create(ctx, provision.Spec{Slug: slug("dupid"), ID: rec.ID}); !errors.Is(err, provision.ErrTenantExists) {
		t.Errorf("duplicate ID: %v", err)
	}
}

func TestSchemaClashIsAnError(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	reg := newRegistry(t, pg, nil)
	s := slug("clash")
	if _, err := pg.OwnerPool(t).Exec(context.Background(), "CREATE SCHEMA "+pgx.Identifier{"tenant_" + s}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	_, err := reg.Create(context.Background(), provision.Spec{Slug: s})
	var se *provision.StepError
	if !errors.As(err, &se) || se.Step != "create schema" || !errors.Is(err, provision.ErrTenantExists) {
		t.Errorf("Create over an existing schema: %v", err)
	}
}

func TestLifecycleThroughLookup(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	reg := newRegistry(t, pg, nil)
	ctx := context.Background()
	rec, err := reg.Create(ctx, provision.Spec{Slug: slug("life")})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(key string) error {
		got, err := reg.LookupTenant(ctx, key)
		if err == nil && got != rec.Tenant() {
			return fmt.Errorf("got %v", got)
		}
		return err
	}
	for _, key := range []string{rec.Slug, rec.ID} {
		if err := lookup(key); err != nil {
			t.Errorf("active, by %q: %v", key, err)
		}
	}
	if err := reg.Suspend(ctx, rec.Slug); err != nil {
		t.Fatal(err)
	}
	if err := lookup(rec.Slug); !errors.Is(err, provision.ErrTenantSuspended) || !errors.Is(err, tenant.ErrSuspended) {
		t.Errorf("suspended: %v", err)
	}
	if err := reg.Suspend(ctx, rec.Slug); !errors.Is(err, provision.ErrInvalidTransition) {
		t.Errorf("suspend twice: %v", err)
	}
	if err := reg.Resume(ctx, rec.Slug); err != nil {
		t.Fatal(err)
	}
	if err := lookup(rec.Slug); err != nil {
		t.Errorf("resumed: %v", err)
	}
	if err := reg.Resume(ctx, rec.Slug); !errors.Is(err, provision.ErrInvalidTransition) {
		t.Errorf("resume active: %v", err)
	}
	if err := lookup("nobody_here"); !errors.Is(err, provision.ErrTenantNotFound) || !errors.Is(err, tenant.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	if err := reg.Suspend(ctx, "nobody_here"); !errors.Is(err, provision.ErrTenantNotFound) {
		t.Errorf("suspend unknown: %v", err)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t).NewDatabase(t)
	reg := newRegistry(t, pg, func(c *provision.Config) { c.Builder = nil })
	ctx := context.Background()
	var slugs []string
	for i := range 7 {
		s := fmt.Sprintf("list_%02d", i)
		if _, err := reg.Create(ctx, provision.Spec{Slug: s}); err != nil {
			t.Fatal(err)
		}
		slugs = append(slugs, s)
	}
	if err := reg.Suspend(ctx, "list_03"); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := ""
	for {
		page, err := reg.List(ctx, provision.ListOptions{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			got = append(got, r.Slug)
		}
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1].Slug
	}
	if diff := cmp.Diff(slugs, got); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	suspended, err := reg.List(ctx, provision.ListOptions{Status: provision.StatusSuspended})
	if err != nil || len(suspended) != 1 || suspended[0].Slug != "list_03" {
		t.Errorf("suspended = %v, %v", suspended, err)
	}
}

func TestSharedTablesMode(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	owner := pg.OwnerPool(t)
	table := "shared_" + strings.ReplaceAll(testenv.UniqueID("n"), "-", "_")
	if _, err := owner.Exec(context.Background(), "CREATE TABLE public."+table+" (id serial, tenant_id text NOT NULL, body text, PRIMARY KEY (tenant_id, id))"); err != nil {
		t.Fatal(err)
	}
	reg := newRegistry(t, pg, func(c *provision.Config) {
		c.Mode, c.SharedTables, c.Builder = pgtenant.SharedTables, []string{"public." + table}, nil
	})
	ctx := context.Background()
	a, err := reg.Create(ctx, provision.Spec{Slug: slug("pa")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.Create(ctx, provision.Spec{Slug: slug("pb")})
	if err != nil {
		t.Fatal(err)
	}
	if a.SchemaName != "" {
		t.Errorf("schema %q in SharedTables mode", a.SchemaName)
	}
	if _, err := owner.Exec(ctx, "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "+pgx.Identifier{pg.AppRole}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	pool := appPool(t, pg, pgtenant.SharedTables)
	for _, rec := range []provision.Record{a, b} {
		if _, err := pool.Exec(ctxFor(rec.Tenant()), "INSERT INTO public."+table+" (body) VALUES ($1)", rec.Slug); err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range []provision.Record{a, b} {
		rows, _ := pool.Query(ctxFor(rec.Tenant()), "SELECT body FROM public."+table)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || !cmp.Equal(got, []string{rec.Slug}) {
			t.Errorf("%s sees %v (%v)", rec.Slug, got, err)
		}
	}
	_, err = pool.Exec(ctxFor(a.Tenant()), "INSERT INTO public."+table+" (tenant_id, body) VALUES ($1, 'x')", b.ID)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("cross-tenant insert: %v", err)
	}
	if err := reg.Delete(ctx, a.Slug); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := pool.QueryRow(ctxFor(b.Tenant()), "SELECT count(*) FROM public."+table).Scan(&left); err != nil || left != 1 {
		t.Errorf("B has %d rows after A's delete (%v)", left, err)
	}
	if err := pool.QueryRow(ctxFor(a.Tenant()), "SELECT count(*) FROM public."+table).Scan(&left); err != nil || left != 0 {
		t.Errorf("A has %d rows after its delete (%v)", left, err)
	}
	// The shared table's policy altered in place: the next Create refuses,
	// leaving nothing.
	if _, err := owner.Exec(ctx, "ALTER POLICY tenant_isolation ON public."+table+" USING (true) WITH CHECK (true)"); err != nil {
		t.Fatal(err)
	}
	c := slug("pc")
	if _, err := reg.Create(ctx, provision.Spec{Slug: c}); !errors.Is(err, provision.ErrForeignPolicy) || !strings.Contains(err.Error(), table) {
		t.Errorf("Create over an altered shared policy: %v, want ErrForeignPolicy naming %s", err, table)
	}
	if _, err := reg.Get(ctx, c); !errors.Is(err, provision.ErrTenantNotFound) {
		t.Errorf("the refused tenant's row: %v", err)
	}
}
