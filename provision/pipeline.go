package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/sqllex"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// namesSQL registers a tenant's names ($1 its ID, $2 its slug) in the one
// namespace of names, in sorted order, so two Creates that name each other
// wait for one another instead of deadlocking.
const namesSQL = `INSERT INTO tenancy.tenant_names (name, tenant_id)
	SELECT DISTINCT name, $1 FROM unnest(ARRAY[$1, $2]::text[]) AS name ORDER BY name`

// errMultiStatement reports a DDL string of several statements that
// sqllex.Statements did not split as the server does; Create then runs the
// DDL one string at a time.
var errMultiStatement = errors.New("provision: DDL string holds several statements")

// errDryRun ends a diagnosing run of createPipelined (see Create).
var errDryRun = errors.New("provision: dry run")

// pipelined is one statement of createPipelined.
type pipelined struct {
	step string
	sql  string
	args []string
	// where names a DDL statement in errors: "statement 2", or "statement
	// 2.3" for the third SQL statement of the second DDL string.
	where string
}

// pipelineOpts vary createPipelined: distribute creates the schema as a
// Citus distributed schema; dryRun rolls everything back at the end.
type pipelineOpts struct {
	distribute, dryRun bool
}

// createPipelined creates a tenant whose schema is built from DDL in one
// round trip: every statement is an extended-protocol query of its own (one
// statement per query string, as Citus needs to forward DDL: a DDL string of
// several statements is split as psql would split it), all written
// before a single Sync, so the server runs them in one implicit transaction
// that commits at the Sync, or rolls back entirely at the first error. The
// registry row goes in as active (nobody sees it before the commit), and the
// tables are confined by tenancy.secure_schema in the same transaction.
func (r *Registry) createPipelined(ctx context.Context, t tenant.Tenant, schema, name string, stmts ddl, o pipelineOpts) (Record, error) {
	qs := make([]pipelined, 0, len(stmts)+6)
	qs = append(qs,
		pipelined{"register", `INSERT INTO tenancy.tenants (id, slug, schema_name, name, status)
			VALUES ($1, $2, $3, $4, 'active') RETURNING ` + recordColumns, []string{t.ID, t.Slug, schema, name}, ""},
		pipelined{"register names", namesSQL, []string{t.ID, t.Slug}, ""},
	)
	if o.distribute {
		qs = append(qs, pipelined{step: "distribute schema", sql: shardingSQL, args: []string{"on"}})
	}
	qs = append(qs,
		pipelined{step: "create schema", sql: "CREATE SCHEMA " + pgx.Identifier{schema}.Sanitize()},
	)
	if o.distribute {
		qs = append(qs, pipelined{step: "distribute schema", sql: shardingSQL, args: []string{"off"}})
	}
	qs = append(qs,
		pipelined{"enter schema", "SELECT set_config('search_path', $1, true), set_config($2, $3, true)",
			[]string{pgx.Identifier{schema}.Sanitize(), r.cfg.Setting, t.ID}, ""},
	)
	for i, s := range stmts {
		parts := sqllex.Statements(s)
		if len(parts) <= 1 {
			qs = append(qs, pipelined{step: "build schema", sql: s, where: fmt.Sprintf("statement %d", i+1)})
			continue
		}
		for j, part := range parts {
			qs = append(qs, pipelined{step: "build schema", sql: part, where: fmt.Sprintf("statement %d.%d", i+1, j+1)})
		}
	}
	qs = append(qs,
		pipelined{"secure tables", secureSQL, []string{schema, r.cfg.Setting, r.cfg.AppRole, t.ID}, ""},
		pipelined{"announce", "SELECT pg_notify($1, $2)", []string{WatchChannel, t.ID + " " + t.Slug}, ""},
	)
	if o.dryRun {
		qs = append(qs, pipelined{step: "dry run", sql: "SELECT 1 / 0"})
	}

	var b pgconn.Batch
	for _, q := range qs {
		params := make([][]byte, len(q.args))
		for i, a := range q.args {
			params[i] = []byte(a)
		}
		b.ExecParams(q.sql, params, nil, nil, nil)
	}

	conn, err := r.cfg.Owner.Acquire(ctx)
	if err != nil {
		return Record{}, &StepError{Op: "create", Slug: t.Slug, Step: "connect", Err: err}
	}
	defer conn.Release()
	var rec Record
	failed, n := -1, 0
	mrr := conn.Conn().PgConn().ExecBatch(ctx, &b)
	for mrr.NextResult() {
		var err error
		if n == 0 {
			rec, err = scanRecord(firstRow{pgx.RowsFromResultReader(conn.Conn().TypeMap(), mrr.ResultReader())})
		} else {
			err = mrr.ResultReader().Read().Err
		}
		if err != nil && failed < 0 {
			failed = n
		}
		n++
	}
	err = mrr.Close()
	if err == nil {
		return rec, nil
	}
	if failed < 0 {
		failed = min(n, len(qs)-1)
	}
	return Record{}, pipelineError(t, qs, failed, err)
}

// pipelineError says which statement of createPipelined failed, and why, in
// the words of the step-by-step Create.
func pipelineError(t tenant.Tenant, qs []pipelined, failed int, err error) error {
	var pgErr *pgconn.PgError
	isPg := errors.As(err, &pgErr)
	step := qs[failed].step
	switch {
	case isPg && pgErr.Code == "23505" && step == "register":
		return fmt.Errorf("%w: slug %q or ID %q", ErrTenantExists, t.Slug, t.ID)
	case isPg && pgErr.Code == "23505" && step == "register names":
		return fmt.Errorf("%w: slug %q or ID %q is another live tenant's slug or ID", ErrTenantExists, t.Slug, t.ID)
	case isPg && pgErr.Code == "42P06" && step == "create schema":
		err = fmt.Errorf("%w: schema %q exists without a registry row (see Audit)", ErrTenantExists, pgtenant.SchemaName(t))
	case step == "build schema":
		if isPg && pgErr.Code == "42601" && strings.Contains(pgErr.Message, "multiple commands") {
			return errMultiStatement
		}
		err = fmt.Errorf("%s: %w", qs[failed].where, err)
	case step == "secure tables":
		err = secureError(err)
	case step == "dry run":
		return errDryRun
	}
	if step == "register names" {
		step = "register"
	}
	return &StepError{Op: "create", Slug: t.Slug, Step: step, Err: err}
}

// firstRow reads the one row of rows as a pgx.Row.
type firstRow struct{ rows pgx.Rows }

func (r firstRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
