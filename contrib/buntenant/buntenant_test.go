package buntenant_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/contrib/buntenant"
	"github.com/tenancykit/tenancy/contrib/internal/webtest"
	"github.com/tenancykit/tenancy/tenant"
	"github.com/uptrace/bun"
)

// Note is the model the package doc shows.
type Note struct {
	bun.BaseModel `bun:"table:notes"`
	ID            int64  `bun:",pk,autoincrement"`
	TenantID      string `bun:",nullzero"`
	Body          string
}

// TestBun: two tenants made by provision with their schema built by
// migrate, bun over the pool: each inserts, reads, updates and deletes its
// own notes and never another's, in and out of transactions; without a
// tenant nothing runs.
func TestBun(t *testing.T) {
	env := webtest.Migrated(t, webtest.NotesChain)
	db := buntenant.Open(env.AppPool(t))
	acme, globex := env.Context(0), env.Context(1)
	for i, ctx := range []context.Context{acme, globex} {
		n := Note{Body: "note of " + env.Tenants[i].Slug}
		if _, err := db.NewInsert().Model(&n).Returning("*").Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if n.ID == 0 || n.TenantID != env.Tenants[i].ID {
			t.Errorf("inserted %+v: want an id and tenant %s read back", n, env.Tenants[i].ID)
		}
	}
	var seen []Note
	if err := db.NewSelect().Model(&seen).Order("id").Scan(acme); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Note{{ID: 1, TenantID: env.Tenants[0].ID, Body: "note of acme"}}, seen); diff != "" {
		t.Errorf("acme sees (-want +got):\n%s", diff)
	}
	// globex's table, schema-qualified, from acme: nothing read, updated or
	// deleted.
	other := bun.Ident(env.Tenants[1].SchemaName)
	var leaked []Note
	if err := db.NewSelect().Model(&leaked).ModelTableExpr("?.notes AS note", other).Scan(acme); err != nil || len(leaked) != 0 {
		t.Errorf("acme reads globex's notes: %+v, %v", leaked, err)
	}
	res, err := db.NewUpdate().Model((*Note)(nil)).ModelTableExpr("?.notes AS note", other).Set("body = 'taken'").Where("true").Exec(acme)
	if n, _ := rowsAffected(res); err != nil || n != 0 {
		t.Errorf("acme updates globex's notes: %d rows, %v", n, err)
	}
	res, err = db.NewDelete().Model((*Note)(nil)).ModelTableExpr("?.notes AS note", other).Where("true").Exec(acme)
	if n, _ := rowsAffected(res); err != nil || n != 0 {
		t.Errorf("acme deletes globex's notes: %d rows, %v", n, err)
	}
	// A transaction in one tenant's scope.
	err = db.RunInTx(globex, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(&Note{Body: "second"}).Exec(ctx); err != nil {
			return err
		}
		_, err := tx.NewUpdate().Model((*Note)(nil)).Set("body = 'first'").Where("body = ?", "note of globex").Exec(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	if err := db.NewSelect().Model((*Note)(nil)).Column("body").Order("id").Scan(globex, &bodies); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"first", "second"}, bodies); diff != "" {
		t.Errorf("globex after its transaction (-want +got):\n%s", diff)
	}
	// A row naming another tenant, and the model without nullzero: the
	// policy refuses both.
	if _, err := db.NewInsert().Model(&Note{TenantID: env.Tenants[1].ID, Body: "planted"}).Exec(acme); !isCode(err, "42501") {
		t.Errorf("acme inserted a note for globex: %v", err)
	}
	if _, err := db.NewInsert().Model(&untagged{Body: "x"}).Exec(acme); !isCode(err, "42501") {
		t.Errorf("an untagged TenantID: %v, want 42501", err)
	}
	// No tenant in the context: an error, never every tenant's rows.
	var all []Note
	if err := db.NewSelect().Model(&all).Scan(context.Background()); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("no tenant: %d rows, %v; want tenant.ErrNoTenant", len(all), err)
	}
}

// untagged is Note without nullzero on TenantID.
type untagged struct {
	bun.BaseModel `bun:"table:notes"`
	ID            int64 `bun:",pk,autoincrement"`
	TenantID      string
	Body          string
}

func rowsAffected(res sql.Result) (int64, error) {
	if res == nil {
		return -1, nil
	}
	return res.RowsAffected()
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
