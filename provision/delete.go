package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// Delete removes a tenant: it marks it deleting (so it is no longer served),
// drops its schema's tables in batches of Config.DropBatch (one transaction
// each, so a tenant with many tables stays within max_locks_per_transaction),
// drops the schema, purges its Redis namespace through Config.Purger, and
// marks it deleted; the registry row stays as a tombstone and the slug may be
// reused. Every step is idempotent, so Delete can be run again after a crash
// at any step and finishes the job. In SharedTables mode it deletes the
// tenant's rows from the shared tables instead of a schema.
func (r *Registry) Delete(ctx context.Context, slug string) error {
	var t tenant.Tenant
	var schema, placement, moveTo, moveFrom string
	err := r.cfg.Owner.QueryRow(ctx, `WITH u AS (UPDATE tenancy.tenants SET status = 'deleting', updated_at = now()
			WHERE slug = $1 AND status IN ('active', 'suspended', 'deleting', 'failed')
			RETURNING id, slug, coalesce(schema_name, '') AS schema_name, placement, coalesce(move_to, '') AS move_to, coalesce(move_from, '') AS move_from)
		SELECT id, slug, schema_name, placement, move_to, move_from FROM u, pg_notify($2, u.id || ' ' || u.slug)`, slug, WatchChannel).
		Scan(&t.ID, &t.Slug, &schema, &placement, &moveTo, &moveFrom)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %q", ErrTenantNotFound, slug)
	}
	if err != nil {
		return &StepError{Op: "delete", Slug: slug, Step: "mark deleting", Err: err}
	}
	steps := []struct {
		name string
		run  func() error
	}{
		{"drop tables", func() error {
			// A tenant in another placement, or in a move, has data in
			// more than one database: each goes.
			for _, name := range []string{moveTo, moveFrom} {
				if p, ok := r.placements[name]; ok && name != "" {
					if err := p.reg.dropLocal(ctx, t, placedSchema(p, t), !p.local); err != nil {
						return fmt.Errorf("placement %q: %w", name, err)
					}
				}
			}
			if placement != "" {
				p, err := r.placement(placement)
				if err != nil {
					return err
				}
				return p.reg.dropLocal(ctx, t, placedSchema(p, t), true)
			}
			return r.dropTables(ctx, t, schema)
		}},
		{"drop schema", func() error {
			if placement != "" {
				return nil
			}
			return r.dropSchema(ctx, schema)
		}},
		{"purge keys", func() error {
			if r.cfg.Purger == nil {
				return nil
			}
			_, err := r.cfg.Purger.Purge(ctx, t)
			return err
		}},
		{"mark deleted", func() error {
			// The names are freed with the status, in one statement.
			_, err := r.cfg.Owner.Exec(ctx, `WITH freed AS (DELETE FROM tenancy.tenant_names WHERE tenant_id = $1)
				UPDATE tenancy.tenants SET status = 'deleted', deleted_at = now(), updated_at = now(),
					move_to = NULL, move_step = NULL, move_from = NULL
				WHERE id = $1`, t.ID)
			return err
		}},
	}
	for _, s := range steps {
		if hook := r.cfg.BeforeDeleteStep; hook != nil {
			if err := hook(ctx, slug, s.name); err != nil {
				return &StepError{Op: "delete", Slug: slug, Step: s.name, Err: err}
			}
		}
		if err := s.run(); err != nil {
			r.recordError(ctx, t.ID, s.name, err)
			return &StepError{Op: "delete", Slug: slug, Step: s.name, Err: err}
		}
	}
	r.cfg.Logger.InfoContext(ctx, "tenant deleted", "tenant_id", t.ID, "tenant_slug", t.Slug)
	return nil
}

func (r *Registry) recordError(ctx context.Context, id, step string, err error) {
	_, _ = r.cfg.Owner.Exec(context.WithoutCancel(ctx), "UPDATE tenancy.tenants SET last_error = $2, updated_at = now() WHERE id = $1",
		id, step+": "+err.Error())
}

// dropTables drops the schema's tables DropBatch at a time. In SharedTables
// mode it deletes the tenant's rows from the shared tables.
func (r *Registry) dropTables(ctx context.Context, t tenant.Tenant, schema string) error {
	if schema == "" {
		return pgx.BeginFunc(ctx, r.cfg.Owner, func(tx pgx.Tx) error {
			// FORCE RLS binds the owner too: scope the DELETE to the tenant.
			if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", r.cfg.Setting, t.ID); err != nil {
				return err
			}
			// One statement: the foreign keys between shared tables are
			// checked at its end, whatever the order of SharedTables.
			var sql strings.Builder
			sql.WriteString("WITH ")
			for i, table := range r.cfg.SharedTables {
				if i > 0 {
					sql.WriteString(", ")
				}
				fmt.Fprintf(&sql, "d%d AS (DELETE FROM %s WHERE tenant_id::text = $1)", i, sharedIdent(table))
			}
			sql.WriteString(" SELECT 1")
			_, err := tx.Exec(ctx, sql.String(), t.ID)
			return err
		})
	}
	for {
		rows, _ := r.cfg.Owner.Query(ctx, `SELECT c.relname FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
			WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_namespace'::regclass
				AND d.refobjid = to_regnamespace($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
			ORDER BY c.relname LIMIT $2`, pgx.Identifier{schema}.Sanitize(), r.cfg.DropBatch)
		tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(tables) == 0 {
			return nil
		}
		if _, err := r.cfg.Owner.Exec(ctx, "DROP TABLE IF EXISTS "+qualified(schema, tables)+" CASCADE"); err != nil {
			return err
		}
	}
}

func (r *Registry) dropSchema(ctx context.Context, schema string) error {
	if schema == "" {
		return nil
	}
	// The name comes from the tenant's own registry row, so IF EXISTS only
	// makes a rerun after a crash succeed.
	_, err := r.cfg.Owner.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	return err
}

func sharedIdent(qualifiedName string) string {
	schema, table, ok := cutQualified(qualifiedName)
	if !ok {
		return pgx.Identifier{table}.Sanitize()
	}
	return pgx.Identifier{schema, table}.Sanitize()
}

func cutQualified(name string) (schema, table string, ok bool) {
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			return name[:i], name[i+1:], true
		}
	}
	return "public", name, false
}

// placedSchema is t's schema in p: "" for a pool.
func placedSchema(p *placed, t tenant.Tenant) string {
	if p.Kind == Pool {
		return ""
	}
	return pgtenant.SchemaName(t)
}
