package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// Spec describes a tenant to create.
type Spec struct {
	// Slug names the tenant and its schema; see tenant.ValidateSlug. Required.
	Slug string
	// Name is a display name: at most MaxNameLen bytes of UTF-8, no NUL.
	// Optional.
	Name string
	// ID is the tenant's ID; see tenant.ValidateID. Defaults to a new UUID.
	ID string
	// Placement names the placement to create the tenant in (see
	// Config.Placements). Defaults to the registry's own database.
	Placement string
}

// Create provisions a tenant in one transaction: it registers the tenant,
// creates its schema (never IF NOT EXISTS: a clash is an error), builds it
// with Config.Builder, confines every table with row level security (each
// must have a tenant_id column), grants the app role what it needs and marks
// the tenant active. On any failure nothing remains — no schema, no registry
// row — and the *StepError says which step failed. Concurrent creates of one
// slug are serialised: one succeeds, the others get ErrTenantExists.
//
// Where that stops: if ctx ends or the connection breaks after the server
// received the commit but before its answer arrived, Create returns that
// error although the tenant may exist, complete (never half-made); Get
// tells which. A custom Builder must leave the transaction open (one that
// commits or rolls back is caught and its work removed) and must not leave
// session state on the owner's connection, which Create cannot check.
//
// With a DDL builder (or none), everything above travels in one round trip
// and runs as one implicit transaction; see the package documentation.
//
// In SharedTables mode Create registers the tenant and makes sure the shared
// tables carry row level security; it creates no schema.
func (r *Registry) Create(ctx context.Context, spec Spec) (Record, error) {
	rec, err := r.create(ctx, spec)
	return r.named(rec), err
}

func (r *Registry) create(ctx context.Context, spec Spec) (Record, error) {
	id := spec.ID
	if id == "" {
		id = r.cfg.NewID()
	}
	t, err := tenant.New(id, spec.Slug)
	if err != nil {
		return Record{}, fmt.Errorf("provision: create tenant: %w", err)
	}
	if err := validateName(spec.Name); err != nil {
		return Record{}, fmt.Errorf("provision: create tenant: %w", err)
	}
	p, err := r.placement(spec.Placement)
	if err != nil {
		return Record{}, fmt.Errorf("provision: create tenant: %w", err)
	}
	if !p.local {
		return r.createIn(ctx, p, t, spec)
	}
	schema := ""
	if r.cfg.Mode == pgtenant.SchemaPerTenant {
		schema = pgtenant.SchemaName(t)
	}
	if schema != "" && r.cfg.SchemaBuilder == nil {
		stmts, ok := r.cfg.Builder.(ddl)
		if ok || r.cfg.Builder == nil {
			rec, err := r.createPipelined(ctx, t, schema, spec.Name, stmts, pipelineOpts{distribute: r.citus})
			if r.citus && citusBuildFailure(err, schema) {
				err = r.diagnose(ctx, t, schema, spec.Name, stmts, err)
			}
			if !errors.Is(err, errMultiStatement) {
				if err == nil {
					r.cfg.Logger.InfoContext(ctx, "tenant created", "tenant_id", t.ID, "tenant_slug", t.Slug, "schema", schema)
				}
				return rec, err
			}
			// A string the server still sees as several statements after
			// sqllex.Statements split it cannot go as one extended query:
			// nothing was committed; run the strings one by one below.
		}
	}
	step := func(name string, err error) error {
		return &StepError{Op: "create", Slug: t.Slug, Step: name, Err: err}
	}
	var rec Record
	err = pgx.BeginFunc(ctx, r.cfg.Owner, func(tx pgx.Tx) error {
		// Serialise creates of one slug; the unique indexes decide the race.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('tenancy:' || $1, 0))", t.Slug); err != nil {
			return step("lock", err)
		}
		var schemaArg any
		if schema != "" {
			schemaArg = schema
		}
		ct, err := tx.Exec(ctx, `INSERT INTO tenancy.tenants (id, slug, schema_name, name, status)
			VALUES ($1, $2, $3, $4, 'provisioning') ON CONFLICT DO NOTHING`, t.ID, t.Slug, schemaArg, spec.Name)
		if err != nil {
			return step("register", err)
		}
		if ct.RowsAffected() == 0 {
			return fmt.Errorf("%w: slug %q or ID %q", ErrTenantExists, t.Slug, t.ID)
		}
		// IDs and slugs share one namespace: a name taken by another live
		// tenant, as its ID or its slug, is refused by the primary key (a
		// concurrent Create of the other waits for this one, then finds it).
		ct, err = tx.Exec(ctx, namesSQL+" ON CONFLICT DO NOTHING", t.ID, t.Slug)
		if err != nil {
			return step("register", err)
		}
		want := int64(2)
		if t.ID == t.Slug {
			want = 1
		}
		if ct.RowsAffected() != want {
			return fmt.Errorf("%w: slug %q or ID %q is another live tenant's slug or ID", ErrTenantExists, t.Slug, t.ID)
		}
		if schema == "" {
			if err := r.secureSharedTables(ctx, tx); err != nil {
				return step("secure shared tables", err)
			}
		} else {
			if err := r.createSchema(ctx, tx, schema); err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "42P06" {
					err = fmt.Errorf("%w: schema %q exists without a registry row (see Audit)", ErrTenantExists, schema)
				}
				return step("create schema", err)
			}
			if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true), set_config($2, $3, true)",
				pgx.Identifier{schema}.Sanitize(), r.cfg.Setting, t.ID); err != nil {
				return step("enter schema", err)
			}
			if r.cfg.SchemaBuilder != nil {
				// Built after this transaction commits the empty schema.
				if err := execAll(ctx, tx, grantSQL(schema, nil, r.cfg.AppRole)); err != nil {
					return step("grant schema", err)
				}
				return nil
			}
			if r.cfg.Builder != nil {
				if err := r.cfg.Builder.BuildTenant(ctx, tx, t, schema); err != nil {
					return step("build schema", err)
				}
				switch tx.Conn().PgConn().TxStatus() {
				case 'T':
				case 'E':
					return step("build schema", errors.New("a statement of the builder failed and the builder returned no error"))
				default:
					// The builder committed or rolled back Create's
					// transaction: what it committed must go.
					err := errors.New("the builder ended Create's transaction (COMMIT or ROLLBACK); a Builder must leave it open")
					if cleanupErr := undoCreate(ctx, tx.Conn(), t, schema); cleanupErr != nil {
						err = errors.Join(err, fmt.Errorf("clean up: %w", cleanupErr))
					}
					return step("build schema", err)
				}
			}
			if err := r.secureSchema(ctx, tx, t, schema); err != nil {
				return step("secure tables", err)
			}
		}
		rec, err = scanRecord(tx.QueryRow(ctx, "UPDATE tenancy.tenants SET status = 'active', updated_at = now() WHERE id = $1 RETURNING "+recordColumns, t.ID))
		if err != nil {
			return step("activate", err)
		}
		return notify(ctx, tx, t)
	})
	if err != nil {
		return Record{}, err
	}
	if r.cfg.SchemaBuilder != nil && schema != "" {
		if rec, err = r.buildOutside(ctx, t, schema); err != nil {
			return Record{}, err
		}
	}
	r.cfg.Logger.InfoContext(ctx, "tenant created", "tenant_id", t.ID, "tenant_slug", t.Slug, "schema", schema)
	return rec, nil
}

// buildOutside runs the SchemaBuilder on a schema that the first transaction
// created empty (and left provisioning), then confines its tables and marks
// the tenant active. On failure it removes the schema and the row.
func (r *Registry) buildOutside(ctx context.Context, t tenant.Tenant, schema string) (Record, error) {
	step := func(name string, err error) error {
		if cleanupErr := undoCreate(ctx, r.cfg.Owner, t, schema); cleanupErr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cleanupErr))
		}
		return &StepError{Op: "create", Slug: t.Slug, Step: name, Err: err}
	}
	if err := r.cfg.SchemaBuilder.BuildTenantSchema(ctx, t, schema); err != nil {
		return Record{}, step("build schema", err)
	}
	var rec Record
	err := pgx.BeginFunc(ctx, r.cfg.Owner, func(tx pgx.Tx) error {
		if err := r.secureSchema(ctx, tx, t, schema); err != nil {
			return err
		}
		var err error
		rec, err = scanRecord(tx.QueryRow(ctx, "UPDATE tenancy.tenants SET status = 'active', updated_at = now() WHERE id = $1 RETURNING "+recordColumns, t.ID))
		if err != nil {
			return err
		}
		return notify(ctx, tx, t)
	})
	if err != nil {
		return Record{}, step("secure tables", err)
	}
	return rec, nil
}

// undoCreate removes what a failed Create committed: the schema and the
// registry row (and with it the names), on q.
func undoCreate(ctx context.Context, q interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, t tenant.Tenant, schema string) error {
	ctx = context.WithoutCancel(ctx)
	if _, err := q.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		return err
	}
	_, err := q.Exec(ctx, "DELETE FROM tenancy.tenants WHERE id = $1 AND status = 'provisioning'", t.ID)
	return err
}

// secureSchema confines every table of schema and grants the app role, in
// the server (tenancy.secure_schema), in one round trip.
func (r *Registry) secureSchema(ctx context.Context, tx pgx.Tx, t tenant.Tenant, schema string) error {
	_, err := tx.Exec(ctx, secureSQL, schema, r.cfg.Setting, r.cfg.AppRole, t.ID)
	return secureError(err)
}

// secureSharedTables makes sure every shared table has a tenant_id column,
// RLS enabled and forced, the policy and the app role's grants. It only
// alters a table that lacks something, so creates do not lock shared tables.
func (r *Registry) secureSharedTables(ctx context.Context, tx pgx.Tx) error {
	for _, qualifiedName := range r.cfg.SharedTables {
		var colType, state, found string
		var enabled, forced bool
		err := tx.QueryRow(ctx, `SELECT coalesce(format_type(a.atttypid, a.atttypmod), ''), c.relrowsecurity, c.relforcerowsecurity, p.state, p.detail
			FROM pg_class c
			LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
			CROSS JOIN LATERAL tenancy.tenant_policies(ARRAY[c.oid], ARRAY[''], $2, $3, '{}') p
			WHERE c.oid = to_regclass($1)`, qualifiedName, r.cfg.Setting, r.cfg.AppRole).Scan(&colType, &enabled, &forced, &state, &found)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("shared table %q does not exist", qualifiedName)
		}
		if err != nil {
			return err
		}
		if colType == "" {
			return fmt.Errorf("%w: %s", ErrMissingTenantColumn, qualifiedName)
		}
		if state == rls.PolicyAltered || state == rls.PolicyExtra {
			return fmt.Errorf("%w: %w", ErrForeignPolicy, rls.ForeignPolicyError([]string{qualifiedName + " (" + found + ")"}))
		}
		hasPolicy := state == rls.PolicyOurs
		if enabled && forced && hasPolicy {
			continue
		}
		schema, table, ok := strings.Cut(qualifiedName, ".")
		if !ok {
			schema, table = "public", qualifiedName
		}
		stmts := secureTableSQL(schema, table, colType, r.cfg.Setting, "") // shared: no pin
		setDefault := stmts[3]
		stmts = stmts[:3]
		if hasPolicy {
			stmts = stmts[:2]
		}
		// Citus refuses any ALTER of a table's distribution column, its
		// default included: a table distributed by tenant_id keeps the
		// default it was created with (without one, an INSERT must name
		// tenant_id, and the policy checks it).
		var distributedByTenant bool
		if r.citus {
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_dist_partition
				WHERE logicalrelid = to_regclass($1) AND column_to_column_name(logicalrelid, partkey) = 'tenant_id')`,
				qualifiedName).Scan(&distributedByTenant); err != nil {
				return err
			}
		}
		if !distributedByTenant {
			stmts = append(stmts, setDefault)
		}
		stmts = append(stmts, "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "+pgx.Identifier{schema, table}.Sanitize()+" TO "+pgx.Identifier{r.cfg.AppRole}.Sanitize())
		if err := execAll(ctx, tx, stmts); err != nil {
			return err
		}
	}
	return nil
}

// execAll runs stmts in tx in one round trip, one statement per query (see
// rls.ExecEach).
func execAll(ctx context.Context, tx pgx.Tx, stmts []string) error {
	return rls.ExecEach(ctx, tx.Conn().PgConn(), stmts)
}

// createSchema creates a tenant's schema; on Citus, as a distributed schema,
// so that its tables live together on one worker and statements that stay
// in the schema are routed there whole.
func (r *Registry) createSchema(ctx context.Context, tx pgx.Tx, schema string) error {
	if r.citus {
		if _, err := tx.Exec(ctx, shardingSQL, "on"); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return err
	}
	if r.citus {
		if _, err := tx.Exec(ctx, shardingSQL, "off"); err != nil {
			return err
		}
	}
	return nil
}

// citusBuildFailure reports whether err is a DDL statement of Create failing
// on Citus because the tenant's own new schema does not exist — on a
// worker, where Citus sent an object the statement creates (the sequence of
// a serial column, say) before the schema itself.
func citusBuildFailure(err error, schema string) bool {
	var se *StepError
	var pgErr *pgconn.PgError
	return errors.As(err, &se) && se.Step == "build schema" && errors.As(err, &pgErr) &&
		pgErr.Code == "3F000" && strings.Contains(pgErr.Message, `"`+schema+`"`)
}

// diagnose runs Create's transaction once more with the schema kept on the
// coordinator and rolls it back, so that the securing step can say what in
// the DDL cannot be distributed (a serial column: ErrSequenceDefault, with
// the columns). It returns that refusal, or orig if there is none.
func (r *Registry) diagnose(ctx context.Context, t tenant.Tenant, schema, name string, stmts ddl, orig error) error {
	_, err := r.createPipelined(ctx, t, schema, name, stmts, pipelineOpts{dryRun: true})
	var se *StepError
	if errors.As(err, &se) && se.Step == "secure tables" {
		return fmt.Errorf("%w (on Citus the tenant's schema is distributed; Citus stopped at: %v)", err, orig)
	}
	return orig
}
