package gormtenant_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/contrib/gormtenant"
	"github.com/tenancykit/tenancy/contrib/internal/webtest"
	"github.com/tenancykit/tenancy/tenant"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Note is the model the package doc shows.
type Note struct {
	ID       int64
	TenantID string `gorm:"default:(-)"`
	Body     string
}

// TestGORM: two tenants made by provision with their schema built by
// migrate, GORM over the pool: each creates, reads, updates and deletes its
// own notes and never another's, in and out of transactions; without a
// tenant nothing runs.
func TestGORM(t *testing.T) {
	env := webtest.Migrated(t, webtest.NotesChain)
	db, err := gormtenant.Open(env.AppPool(t), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	acme, globex := env.Context(0), env.Context(1)
	ids := map[string]int64{}
	for i, ctx := range []context.Context{acme, globex} {
		n := Note{Body: "note of " + env.Tenants[i].Slug}
		if err := db.WithContext(ctx).Create(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n.ID == 0 || n.TenantID != env.Tenants[i].ID {
			t.Errorf("created %+v: want an id and tenant %s read back", n, env.Tenants[i].ID)
		}
		ids[env.Tenants[i].Slug] = n.ID
	}
	var seen []Note
	if err := db.WithContext(acme).Order("id").Find(&seen).Error; err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Note{{ID: ids["acme"], TenantID: env.Tenants[0].ID, Body: "note of acme"}}, seen); diff != "" {
		t.Errorf("acme sees (-want +got):\n%s", diff)
	}
	// globex's table, schema-qualified, from acme: nothing read, updated or
	// deleted.
	other := pgx.Identifier{env.Tenants[1].SchemaName, "notes"}.Sanitize()
	var leaked []Note
	if err := db.WithContext(acme).Table(other).Find(&leaked).Error; err != nil || len(leaked) != 0 {
		t.Errorf("acme reads globex's notes: %+v, %v", leaked, err)
	}
	if res := db.WithContext(acme).Table(other).Where("id = ?", ids["globex"]).Update("body", "taken"); res.Error != nil || res.RowsAffected != 0 {
		t.Errorf("acme updates globex's note: %d rows, %v", res.RowsAffected, res.Error)
	}
	if res := db.WithContext(acme).Table(other).Where("id = ?", ids["globex"]).Delete(&Note{}); res.Error != nil || res.RowsAffected != 0 {
		t.Errorf("acme deletes globex's note: %d rows, %v", res.RowsAffected, res.Error)
	}
	// A transaction in one tenant's scope.
	err = db.WithContext(globex).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&Note{Body: "second"}).Error; err != nil {
			return err
		}
		return tx.Model(&Note{}).Where("body = ?", "note of globex").Update("body", "first").Error
	})
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	if err := db.WithContext(globex).Model(&Note{}).Order("id").Pluck("body", &bodies).Error; err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"first", "second"}, bodies); diff != "" {
		t.Errorf("globex after its transaction (-want +got):\n%s", diff)
	}
	// A row naming another tenant is refused by the policy.
	if err := db.WithContext(acme).Create(&Note{TenantID: env.Tenants[1].ID, Body: "planted"}).Error; err == nil {
		t.Error("acme inserted a note for globex")
	}
	// The model without the tag: GORM inserts tenant_id = '' and the
	// policy refuses it, as the package doc says.
	if err := db.WithContext(acme).Create(&untagged{Body: "x"}).Error; !isCode(err, "42501") {
		t.Errorf("an untagged TenantID: %v, want 42501", err)
	}
	// No tenant in the context: an error, never every tenant's rows.
	var all []Note
	if err := db.Find(&all).Error; !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("no tenant: %d rows, %v; want tenant.ErrNoTenant", len(all), err)
	}
}

// untagged is Note without the default:(-) tag.
type untagged struct {
	ID       int64
	TenantID string
	Body     string
}

func (untagged) TableName() string { return "notes" }

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}
