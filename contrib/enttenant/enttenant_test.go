package enttenant_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/contrib/enttenant"
	"github.com/tenancykit/tenancy/contrib/enttenant/internal/notes/ent"
	"github.com/tenancykit/tenancy/contrib/enttenant/internal/notes/ent/note"
	"github.com/tenancykit/tenancy/contrib/internal/webtest"
	"github.com/tenancykit/tenancy/tenant"
)

type row struct {
	ID       int64
	TenantID string
	Body     string
}

func rows(ns []*ent.Note) []row {
	out := make([]row, len(ns))
	for i, n := range ns {
		out[i] = row{n.ID, n.TenantID, n.Body}
	}
	return out
}

// TestEnt: two tenants made by provision with their schema built by
// migrate, ent over the pool: each creates, reads, updates and deletes its
// own notes and never another's, in and out of transactions; without a
// tenant nothing runs.
func TestEnt(t *testing.T) {
	env := webtest.Migrated(t, webtest.NotesChain)
	drv := enttenant.Driver(env.AppPool(t))
	client := ent.NewClient(ent.Driver(drv))
	defer client.Close()
	acme, globex := env.Context(0), env.Context(1)
	for i, ctx := range []context.Context{acme, globex} {
		n, err := client.Note.Create().SetBody("note of " + env.Tenants[i].Slug).Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n.ID != 1 {
			t.Errorf("created %+v: want the tenant's first identity id", n)
		}
	}
	for i, ctx := range []context.Context{acme, globex} {
		seen, err := client.Note.Query().Order(ent.Asc(note.FieldID)).All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []row{{1, env.Tenants[i].ID, "note of " + env.Tenants[i].Slug}}
		if diff := cmp.Diff(want, rows(seen)); diff != "" {
			t.Errorf("%s sees (-want +got):\n%s", env.Tenants[i].Slug, diff)
		}
	}

	// globex's table, schema-qualified, from acme: nothing read, updated
	// or deleted.
	other := `"` + env.Tenants[1].SchemaName + `".notes`
	var leaked int
	if err := drv.DB().QueryRowContext(acme, "SELECT count(*) FROM "+other).Scan(&leaked); err != nil || leaked != 0 {
		t.Errorf("acme reads %d of globex's notes, %v", leaked, err)
	}
	res, err := drv.DB().ExecContext(acme, "UPDATE "+other+" SET body = 'taken'")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 0 {
		t.Errorf("acme updates %d of globex's notes", n)
	}

	// Update and delete in one tenant, and a transaction.
	if n, err := client.Note.Update().SetBody("edited").Save(acme); err != nil || n != 1 {
		t.Errorf("acme's update: %d rows, %v", n, err)
	}
	tx, err := client.Tx(globex)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Note.Create().SetBody("second").Save(globex); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Note.Delete().Where(note.ID(1)).Exec(globex); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	wantAfter := map[string][]row{
		"acme":   {{1, env.Tenants[0].ID, "edited"}},
		"globex": {{2, env.Tenants[1].ID, "second"}},
	}
	for i, ctx := range []context.Context{acme, globex} {
		seen, err := client.Note.Query().Order(ent.Asc(note.FieldID)).All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantAfter[env.Tenants[i].Slug], rows(seen)); diff != "" {
			t.Errorf("%s after (-want +got):\n%s", env.Tenants[i].Slug, diff)
		}
	}

	// A note planted for another tenant is refused by the policy.
	if _, err := client.Note.Create().SetBody("planted").SetTenantID(env.Tenants[1].ID).Save(acme); !isCode(err, "42501") {
		t.Errorf("acme created a note for globex: %v", err)
	}
	// ent's own migration, as the app role: refused, as the doc says.
	if err := client.Schema.Create(acme); err == nil {
		t.Error("ent's Schema.Create ran as the app role")
	}
	// No tenant in the context: an error, never every tenant's rows.
	all, err := client.Note.Query().All(context.Background())
	if !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("no tenant: %d rows, %v; want tenant.ErrNoTenant", len(all), err)
	}
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
