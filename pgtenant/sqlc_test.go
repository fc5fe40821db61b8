package pgtenant_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/tenant"
)

// The shape of sqlc's generated pgx/v5 code (sqlc.yaml: sql_package
// pgx/v5, emit_methods_with_db_argument false), written out as sqlc writes
// it, so the suite shows *pgtenant.Pool and its pgx.Tx working under code
// nobody here wrote.

type sqlcDBTX interface {
	Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
	Query(context.Context, string, ...interface{}) (pgx.Rows, error)
	QueryRow(context.Context, string, ...interface{}) pgx.Row
}

func sqlcNew(db sqlcDBTX) *sqlcQueries { return &sqlcQueries{db: db} }

type sqlcQueries struct{ db sqlcDBTX }

func (q *sqlcQueries) WithTx(tx pgx.Tx) *sqlcQueries { return &sqlcQueries{db: tx} }

type sqlcItem struct {
	ID       int64
	TenantID string
	Name     string
}

const createItem = `-- name: CreateItem :one
INSERT INTO items (name) VALUES ($1) RETURNING id, tenant_id, name
`

func (q *sqlcQueries) CreateItem(ctx context.Context, name string) (sqlcItem, error) {
	row := q.db.QueryRow(ctx, createItem, name)
	var i sqlcItem
	err := row.Scan(&i.ID, &i.TenantID, &i.Name)
	return i, err
}

const listItems = `-- name: ListItems :many
SELECT id, tenant_id, name FROM items ORDER BY id
`

func (q *sqlcQueries) ListItems(ctx context.Context) ([]sqlcItem, error) {
	rows, err := q.db.Query(ctx, listItems)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []sqlcItem
	for rows.Next() {
		var i sqlcItem
		if err := rows.Scan(&i.ID, &i.TenantID, &i.Name); err != nil {
			return nil, err
		}
		items = append(items, i)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return items, nil
}

const renameItems = `-- name: RenameItems :execrows
UPDATE items SET name = name || $1
`

func (q *sqlcQueries) RenameItems(ctx context.Context, suffix string) (int64, error) {
	result, err := q.db.Exec(ctx, renameItems, suffix)
	if err != nil {
		return 0, err
	}
	return result.RowsAffected(), nil
}

// TestSqlcGeneratedCode runs sqlc-shaped queries for two tenants through
// the pool and through WithTx on a pgtenant transaction: each tenant sees
// exactly its own rows, a committed WithTx persists, a rolled-back one
// leaves nothing, and no tenant in the context is an error, not all rows.
func TestSqlcGeneratedCode(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	tenants := createTenants(t, pg, "sqlc", 2, 0)
	a, b := tenants[0], tenants[1]
	p := newPool(t, pg, nil)
	q := sqlcNew(p)
	names := func(tn tenant.Tenant) []string {
		t.Helper()
		items, err := q.ListItems(ctxFor(tn))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range items {
			if i.TenantID != tn.ID {
				t.Errorf("%s read a row of tenant %s", tn.Slug, i.TenantID)
			}
			out = append(out, i.Name)
		}
		return out
	}
	for _, tn := range tenants {
		for _, n := range []string{"one", "two"} {
			if it, err := q.CreateItem(ctxFor(tn), tn.Slug+"-"+n); err != nil || it.TenantID != tn.ID {
				t.Fatalf("CreateItem: %+v, %v", it, err)
			}
		}
	}
	// WithTx, committed: a rename and an insert in one transaction.
	ctx := ctxFor(a)
	err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		qtx := q.WithTx(tx)
		if n, err := qtx.RenameItems(ctx, "!"); err != nil || n != 2 {
			t.Errorf("RenameItems in tx: %d rows, %v; want 2 (tenant a's only)", n, err)
		}
		_, err := qtx.CreateItem(ctx, a.Slug+"-three")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// WithTx, rolled back: nothing of it remains.
	errRollback := errors.New("roll back")
	err = pgx.BeginFunc(ctxFor(b), p, func(tx pgx.Tx) error {
		if _, err := q.WithTx(tx).CreateItem(ctxFor(b), b.Slug+"-ghost"); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("BeginFunc: %v", err)
	}
	if diff := cmp.Diff([]string{a.Slug + "-one!", a.Slug + "-two!", a.Slug + "-three"}, names(a)); diff != "" {
		t.Errorf("tenant a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{b.Slug + "-one", b.Slug + "-two"}, names(b)); diff != "" {
		t.Errorf("tenant b (-want +got):\n%s", diff)
	}
	if _, err := q.ListItems(context.Background()); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("ListItems without a tenant: %v, want tenant.ErrNoTenant", err)
	}
	if _, err := q.RenameItems(context.Background(), "?"); !errors.Is(err, tenant.ErrNoTenant) {
		t.Errorf("RenameItems without a tenant: %v, want tenant.ErrNoTenant", err)
	}
}
