package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/tenant"
)

// The steps of [Registry.Move], in order, as MoveEvent.Step and
// MoveOptions.BeforeStep name them.
const (
	// MovePrepare removes what an interrupted attempt left in the target
	// and creates the tenant there: its schema from the tenant's DDL
	// (Config.Builder or the placement's SchemaBuilder: the tenant chain),
	// row level security and grants; for a pool, the shared tables'
	// securing.
	MovePrepare = "prepare"
	// MoveCopy copies every table's rows from one snapshot of the source,
	// with COPY, into the target in one transaction. The tenant keeps
	// reading and writing the source meanwhile.
	MoveCopy = "copy"
	// MoveFreeze starts the cut-over: the registry marks the tenant moving
	// (pgtenant.Router holds the tenant's calls), and a fence on each of the
	// tenant's source tables (a trigger that refuses the tenant's writes,
	// SQLSTATE TN010) is created; creating it waits for every transaction
	// that wrote to the table to end. Reads of the source go on.
	MoveFreeze = "freeze"
	// MoveSync compares each table (row count and checksum) and copies
	// again the tables written since the snapshot, with the tables whose
	// foreign keys reach them; then it brings the target's sequences up to
	// the source's.
	MoveSync = "sync"
	// MoveVerify compares every table (row count, checksum) and every
	// sequence once more; a difference stops the move before the switch.
	MoveVerify = "verify"
	// MoveSwitch records the new placement in the registry and announces
	// it on WatchChannel: the cut-over ends.
	MoveSwitch = "switch"
	// MoveCleanup removes the tenant from the source: its schema, or its
	// rows of the shared tables (a pool keeps the fence).
	MoveCleanup = "cleanup"
)

// the registry's move_step values.
const (
	stepCopy    = "copy"
	stepCutover = "cutover"
	stepCleanup = "cleanup"
)

// ErrMoveInProgress is matched by the error of a Move of a tenant that is
// already moving to another placement.
var ErrMoveInProgress = errors.New("provision: the tenant is moving to another placement")

// ErrMoveMismatch is matched by the error of a Move whose verification
// found the target different from the source; see *MismatchError.
var ErrMoveMismatch = errors.New("provision: the moved copy differs from the source")

// MismatchError says what verification found different.
type MismatchError struct {
	// Object is the table or sequence.
	Object string
	// Source and Target are what each side holds: "rows=… sum=…" for a
	// table, the last value for a sequence.
	Source, Target string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("provision: moved copy of %s differs: source %s, target %s", e.Object, e.Source, e.Target)
}

// Unwrap returns ErrMoveMismatch.
func (e *MismatchError) Unwrap() error { return ErrMoveMismatch }

// MoveOptions configures [Registry.Move]. Zero fields mean their documented
// defaults.
type MoveOptions struct {
	// Progress, if set, receives an event as each step starts, and as each
	// table has been copied. Called on Move's goroutine.
	Progress func(MoveEvent)
	// BeforeStep, if set, is called before each step (MovePrepare …
	// MoveCleanup); an error stops Move there, as a crash would. For
	// observability and tests.
	BeforeStep func(ctx context.Context, step string) error
	// LockTimeout bounds each attempt to take the locks the fence needs on
	// a source table (they wait for the transactions writing it, and
	// writes queue behind them); Move tries again until its context ends.
	// Defaults to 2 s.
	LockTimeout time.Duration
	// CatchUp is how many rounds of comparing and copying again the
	// changed buckets run after the copy, before the freeze, while the
	// tenant still writes. Each costs a checksum of both sides; it pays
	// for a tenant whose writes during the copy touch many buckets
	// (updates spread over old rows), so that the frozen sync copies less.
	// Defaults to 0: new rows of an identity key share a bucket or two,
	// which the sync copies quickly.
	CatchUp int
}

// MoveEvent is one step of a Move, or one table copied.
type MoveEvent struct {
	// Step is MovePrepare … MoveCleanup.
	Step string
	// Table is the table just copied, in MoveCopy and MoveSync; "" as a step starts.
	Table string
	// Tables and TablesDone count the tables of the step.
	Tables, TablesDone int
	// Rows is how many rows the step has copied so far.
	Rows int64
	// Elapsed is the time since Move started.
	Elapsed time.Duration
}

// MoveResult says what a Move did.
type MoveResult struct {
	// From and To are the placements.
	From, To string
	// ResumedAt is the step an interrupted move was resumed at; "" for a
	// move that started now.
	ResumedAt string
	// Tables is how many tables were copied; Rows how many rows (the
	// copy's, plus those copied again by the sync).
	Tables int
	Rows   int64
	// Pause is how long the tenant's writes were frozen: from MoveFreeze to
	// the end of MoveSwitch. Zero when resumed after the switch.
	Pause time.Duration
	// Elapsed is the time Move took.
	Elapsed time.Duration
}

// Move moves a tenant to another placement, in any direction between pool,
// bridge and silo, and returns when the tenant is served from there and the
// source holds nothing of it:
//
//  1. prepare: the target gets the tenant's schema from the tenant's DDL
//     (or, for a pool, its shared tables' securing) after anything an
//     interrupted attempt left there is removed;
//  2. copy: every table's rows, from one snapshot, by COPY; the tenant keeps
//     reading and writing the source;
//  3. freeze: the registry marks the tenant moving (pgtenant.Router holds
//     its calls, up to RouterConfig.MoveWait) and a fence on the source
//     tables refuses its writes (SQLSTATE TN010, in every process and
//     connection, whatever reached the source);
//  4. sync: tables written since the snapshot are copied again, sequences
//     brought up to the source's;
//  5. verify: row count and checksum per table, and sequences, compared;
//  6. switch: the new placement recorded and announced on WatchChannel;
//  7. cleanup: the source's schema dropped (bridge, silo) or its rows
//     deleted (pool).
//
// The tenant's writes pause from freeze to switch (MoveResult.Pause): no
// write acknowledged before the freeze is lost, none after it reaches the
// source. Its reads go on through the copy.
//
// Move is resumable and idempotent: after a crash at any step, run it again
// with the same target and it carries on (a move stopped before the freeze
// starts its copy over; after it, the fence holds the source still and the
// sync and verification are repeated). A tenant already in the target
// returns at once. Moving to a silo that holds another tenant fails with
// ErrPlacementFull; moving to another target while a move is in progress,
// with ErrMoveInProgress; a failed verification, with a *MismatchError,
// the tenant still served (frozen) from the source until a Move completes.
//
// Where it stops: tables are matched by name and must have the same columns
// (name and type) on both sides; triggers on the target tables fire as the
// rows are inserted; large objects are not moved. The checksum compares
// each row's text (under fixed DateStyle, TimeZone and float settings), so
// a type whose text output is not stable is reported as a mismatch.
func (r *Registry) Move(ctx context.Context, slug, to string, opts MoveOptions) (MoveResult, error) {
	start := time.Now()
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Second
	}
	dst, err := r.placement(to)
	if err != nil {
		return MoveResult{}, fmt.Errorf("provision: move %q: %w", slug, err)
	}
	m := &mover{r: r, opts: opts, start: start, dst: dst}
	if err := m.load(ctx, slug); err != nil {
		return MoveResult{}, err
	}
	m.res.To = dst.Name
	// One Move of a tenant at a time, across processes: a session lock,
	// held on a connection of its own for the whole move, and released by
	// the server if this process dies.
	conn, err := r.cfg.Owner.Acquire(ctx)
	if err != nil {
		return MoveResult{}, fmt.Errorf("provision: move %q: %w", slug, err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended('tenancy-move:' || $1, 0))", m.t.ID).Scan(&locked); err != nil {
		return MoveResult{}, fmt.Errorf("provision: move %q: %w", slug, err)
	}
	if !locked {
		return MoveResult{}, fmt.Errorf("%w: another Move of tenant %q is running", ErrMoveInProgress, slug)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtextextended('tenancy-move:' || $1, 0))", m.t.ID); err != nil {
			// The lock must not stay on a pooled connection.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	return m.run(ctx)
}

// mover is one Move.
type mover struct {
	r     *Registry
	opts  MoveOptions
	start time.Time
	res   MoveResult

	t                  tenant.Tenant
	name               string
	status             string
	src, dst           *placed
	step               string // the registry's move_step
	movingTo, moveFrom string
	frozenAt           time.Time
	// synced: the frozen sync compared every table; recopied are the jobs
	// it ran, which verify compares again.
	synced   bool
	recopied []job
}

func (m *mover) load(ctx context.Context, slug string) error {
	var placement string
	err := m.r.cfg.Owner.QueryRow(ctx, `SELECT id, slug, name, status, placement, coalesce(move_to, ''), coalesce(move_step, ''), coalesce(move_from, '')
		FROM tenancy.tenants WHERE slug = $1 AND status <> 'deleted'`, slug).
		Scan(&m.t.ID, &m.t.Slug, &m.name, &m.status, &placement, &m.movingTo, &m.step, &m.moveFrom)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %q", ErrTenantNotFound, slug)
	}
	if err != nil {
		return fmt.Errorf("provision: move %q: %w", slug, err)
	}
	if m.status != string(StatusActive) && m.status != string(StatusSuspended) {
		return fmt.Errorf("%w: tenant %q is %s; only an active or suspended tenant moves", ErrInvalidTransition, slug, m.status)
	}
	src, err := m.r.placement(placement)
	if err != nil {
		return fmt.Errorf("provision: move %q: the registry places it in a placement this Registry does not know: %w", slug, err)
	}
	m.src = src
	return nil
}

func (m *mover) fail(step string, err error) error {
	m.r.recordError(context.WithoutCancel(context.Background()), m.t.ID, "move "+step, err)
	return &StepError{Op: "move", Slug: m.t.Slug, Step: step, Err: err}
}

func (m *mover) event(e MoveEvent) {
	if m.opts.Progress != nil {
		e.Elapsed = time.Since(m.start)
		m.opts.Progress(e)
	}
}

// enter announces step and runs the BeforeStep hook.
func (m *mover) enter(ctx context.Context, step string) error {
	m.event(MoveEvent{Step: step})
	if m.opts.BeforeStep != nil {
		if err := m.opts.BeforeStep(ctx, step); err != nil {
			return &StepError{Op: "move", Slug: m.t.Slug, Step: step, Err: err}
		}
	}
	return nil
}

func (m *mover) run(ctx context.Context) (MoveResult, error) {
	m.res.From = m.src.Name
	switch {
	case m.step == stepCleanup:
		// Switched already: the source named by move_from is cleaned up.
		src, err := m.r.placement(m.moveFrom)
		if err != nil {
			return m.res, fmt.Errorf("provision: move %q: resume cleanup: %w", m.t.Slug, err)
		}
		m.res.From, m.res.ResumedAt = src.Name, MoveCleanup
		if m.src != m.dst {
			return m.res, fmt.Errorf("%w: tenant %q is finishing its move to %q; run Move to %q first", ErrMoveInProgress, m.t.Slug, m.src.Name, m.src.Name)
		}
		return m.cleanup(ctx, src)
	case m.step != "" && m.movingTo != m.dst.Name:
		return m.res, fmt.Errorf("%w: tenant %q is moving to %q; run Move to %q to finish it", ErrMoveInProgress, m.t.Slug, m.movingTo, m.movingTo)
	case m.step == "" && m.src == m.dst:
		m.res.Elapsed = time.Since(m.start)
		return m.res, nil
	}
	if m.step == "" {
		if err := m.begin(ctx); err != nil {
			return m.res, err
		}
		m.step = stepCopy
	} else {
		m.res.ResumedAt = map[string]string{stepCopy: MovePrepare, stepCutover: MoveFreeze}[m.step]
	}
	if m.step == stepCopy {
		if err := m.enter(ctx, MovePrepare); err != nil {
			return m.res, err
		}
		if err := m.prepare(ctx); err != nil {
			return m.res, m.fail(MovePrepare, err)
		}
		if err := m.enter(ctx, MoveCopy); err != nil {
			return m.res, err
		}
		if err := m.copyAll(ctx); err != nil {
			return m.res, m.fail(MoveCopy, err)
		}
		// Rounds of catching up while the tenant still writes, so that the
		// sync under the freeze has less left to copy.
		for range m.opts.CatchUp {
			if err := m.sync(ctx, MoveCopy, false); err != nil {
				return m.res, m.fail(MoveCopy, err)
			}
		}
		if err := m.enter(ctx, MoveFreeze); err != nil {
			return m.res, err
		}
		if err := m.setStep(ctx, stepCopy, stepCutover); err != nil {
			return m.res, m.fail(MoveFreeze, err)
		}
	} else if err := m.enter(ctx, MoveFreeze); err != nil {
		return m.res, err
	}
	m.frozenAt = time.Now()
	if err := m.fence(ctx); err != nil {
		return m.res, m.fail(MoveFreeze, err)
	}
	if err := m.enter(ctx, MoveSync); err != nil {
		return m.res, err
	}
	if err := m.sync(ctx, MoveSync, true); err != nil {
		return m.res, m.fail(MoveSync, err)
	}
	if err := m.enter(ctx, MoveVerify); err != nil {
		return m.res, err
	}
	if err := m.verify(ctx); err != nil {
		return m.res, m.fail(MoveVerify, err)
	}
	if err := m.enter(ctx, MoveSwitch); err != nil {
		return m.res, err
	}
	if err := m.switchOver(ctx); err != nil {
		return m.res, m.fail(MoveSwitch, err)
	}
	m.res.Pause = time.Since(m.frozenAt)
	return m.cleanup(ctx, m.src)
}

// begin records the move: its target, and the step.
func (m *mover) begin(ctx context.Context) error {
	return pgx.BeginFunc(ctx, m.r.cfg.Owner, func(tx pgx.Tx) error {
		if m.dst.Kind == Silo {
			if err := m.r.checkSilo(ctx, tx, m.dst, m.t.ID); err != nil {
				return err
			}
		}
		ct, err := tx.Exec(ctx, `UPDATE tenancy.tenants SET move_to = $2, move_step = $3, updated_at = now()
			WHERE id = $1 AND move_step IS NULL`, m.t.ID, m.dst.Name, stepCopy)
		if err != nil {
			return err
		}
		if ct.RowsAffected() != 1 {
			return fmt.Errorf("%w: tenant %q began another move meanwhile", ErrMoveInProgress, m.t.Slug)
		}
		return nil
	})
}

// setStep moves the registry's move_step from → to and announces it.
func (m *mover) setStep(ctx context.Context, from, to string) error {
	return pgx.BeginFunc(ctx, m.r.cfg.Owner, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, "UPDATE tenancy.tenants SET move_step = $3, updated_at = now() WHERE id = $1 AND move_step = $2", m.t.ID, from, to)
		if err != nil {
			return err
		}
		if ct.RowsAffected() != 1 {
			return fmt.Errorf("%w: tenant %q's move changed meanwhile", ErrMoveInProgress, m.t.Slug)
		}
		return notify(ctx, tx, m.t)
	})
}

func (m *mover) schemaIn(p *placed) string {
	if p.Kind == Pool {
		return ""
	}
	return pgtenant.SchemaName(m.t)
}

// prepare empties the target of the tenant and creates it there.
func (m *mover) prepare(ctx context.Context) error {
	if err := m.dst.reg.dropLocal(ctx, m.t, m.schemaIn(m.dst), !m.dst.local); err != nil {
		return fmt.Errorf("remove an earlier attempt's copy from %q: %w", m.dst.Name, err)
	}
	if err := m.unfence(ctx, m.dst); err != nil {
		return fmt.Errorf("remove the tenant's old fence from %q: %w", m.dst.Name, err)
	}
	if !m.dst.local {
		_, err := m.dst.reg.Create(ctx, Spec{Slug: m.t.Slug, ID: m.t.ID, Name: m.name})
		return err
	}
	return m.dst.reg.buildHere(ctx, m.t)
}

// dropLocal removes the tenant's data from the registry's own database: its
// schema, or its rows of the shared tables; with row, its registry row too
// (a placement's row, which a move made).
func (r *Registry) dropLocal(ctx context.Context, t tenant.Tenant, schema string, row bool) error {
	if err := r.dropTables(ctx, t, schema); err != nil {
		return err
	}
	if err := r.dropSchema(ctx, schema); err != nil {
		return err
	}
	if row {
		_, err := r.cfg.Owner.Exec(ctx, "DELETE FROM tenancy.tenants WHERE id = $1", t.ID)
		return err
	}
	return nil
}

// buildHere creates t's schema in the registry's own database (or secures
// the shared tables) without a registry row: the move's target when the
// row is the directory's own.
func (r *Registry) buildHere(ctx context.Context, t tenant.Tenant) error {
	if r.cfg.Mode == pgtenant.SharedTables {
		return pgx.BeginFunc(ctx, r.cfg.Owner, func(tx pgx.Tx) error { return r.secureSharedTables(ctx, tx) })
	}
	schema := pgtenant.SchemaName(t)
	err := pgx.BeginFunc(ctx, r.cfg.Owner, func(tx pgx.Tx) error {
		if err := r.createSchema(ctx, tx, schema); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true), set_config($2, $3, true)",
			pgx.Identifier{schema}.Sanitize(), r.cfg.Setting, t.ID); err != nil {
			return err
		}
		if r.cfg.SchemaBuilder != nil {
			return execAll(ctx, tx, grantSQL(schema, nil, r.cfg.AppRole))
		}
		if r.cfg.Builder != nil {
			if err := r.cfg.Builder.BuildTenant(ctx, tx, t, schema); err != nil {
				return err
			}
		}
		return r.secureSchema(ctx, tx, t, schema)
	})
	if err != nil || r.cfg.SchemaBuilder == nil {
		return err
	}
	if err := r.cfg.SchemaBuilder.BuildTenantSchema(ctx, t, schema); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, r.cfg.Owner, func(tx pgx.Tx) error { return r.secureSchema(ctx, tx, t, schema) })
}

// table is one of the tenant's tables in one placement.
type table struct {
	oid   uint32
	name  string // the relation's name, which pairs source and target
	ident string // schema-qualified, quoted
	cols  []string
	types []string
	// bucket is the SQL expression that splits the table's rows into
	// buckets for the comparison and the sync: the first integer column of
	// the primary key divided by bucketSize (new rows of an identity column
	// share a bucket), else a hash of the primary key, else 0.
	bucket string
	// hashed: every column's type has a hash function, so a row is
	// checksummed by hash_record_extended rather than by its text.
	hashed bool
	// only, if not nil, limits a checksum to these buckets.
	only []int64
}

// bucketSize is how many consecutive integer keys share a bucket; the hash
// of other keys spreads rows over as many buckets.
const bucketSize = 1024

func (t table) colList() string {
	q := make([]string, len(t.cols))
	for i, c := range t.cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// tables lists the tenant's tables in placement p, parents before the
// tables whose foreign keys reach them.
func (m *mover) tables(ctx context.Context, p *placed) ([]table, error) {
	var oids []uint32
	if p.Kind == Pool {
		rows, _ := p.Owner.Query(ctx, "SELECT to_regclass(t)::oid FROM unnest($1::text[]) AS t", p.SharedTables)
		got, err := pgx.CollectRows(rows, pgx.RowTo[*uint32])
		if err != nil {
			return nil, err
		}
		for i, o := range got {
			if o == nil {
				return nil, fmt.Errorf("shared table %q of placement %q does not exist", p.SharedTables[i], p.Name)
			}
			oids = append(oids, *o)
		}
	} else {
		rows, _ := p.Owner.Query(ctx, `SELECT c.oid FROM pg_class c
			WHERE c.relnamespace = to_regnamespace($1) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
				AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
			ORDER BY c.relname`, pgx.Identifier{m.schemaIn(p)}.Sanitize())
		var err error
		if oids, err = pgx.CollectRows(rows, pgx.RowTo[uint32]); err != nil {
			return nil, err
		}
	}
	rows, _ := p.Owner.Query(ctx, `SELECT c.oid, c.relname::text, format('%I.%I', n.nspname, c.relname),
			ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum),
			ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum),
			ARRAY(SELECT a.attname::text FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord),
			ARRAY(SELECT a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord),
			NOT EXISTS (SELECT FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
				WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
					AND NOT EXISTS (SELECT FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod AND am.amname = 'hash'
						WHERE oc.opcdefault AND (oc.opcintype = CASE WHEN t.typbasetype <> 0 THEN t.typbasetype ELSE t.oid END
							OR t.typcategory = 'A' AND oc.opcintype = 'anyarray'::regtype
							OR t.typtype = 'e' AND oc.opcintype = 'anyenum'::regtype)))
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1) ORDER BY c.relname`, oids)
	var ts []table
	var tb table
	var pk []string
	var integer []bool
	if _, err := pgx.ForEachRow(rows, []any{&tb.oid, &tb.name, &tb.ident, &tb.cols, &tb.types, &pk, &integer, &tb.hashed}, func() error {
		tb.bucket = bucketExpr(pk, integer)
		ts = append(ts, tb)
		return nil
	}); err != nil {
		return nil, err
	}
	rows, _ = p.Owner.Query(ctx, `SELECT DISTINCT conrelid::oid, confrelid::oid FROM pg_constraint
		WHERE contype = 'f' AND conrelid = ANY($1) AND confrelid = ANY($1) AND conrelid <> confrelid`, oids)
	refs := map[uint32][]uint32{} // table → the tables it references
	var from, onto uint32
	if _, err := pgx.ForEachRow(rows, []any{&from, &onto}, func() error {
		refs[from] = append(refs[from], onto)
		return nil
	}); err != nil {
		return nil, err
	}
	return topoSort(ts, refs), nil
}

// bucketExpr is a table's bucket expression (see table.bucket).
func bucketExpr(pk []string, integer []bool) string {
	for i, c := range pk {
		if integer[i] && c != "tenant_id" {
			return fmt.Sprintf("(%s / %d)", pgx.Identifier{c}.Sanitize(), bucketSize)
		}
	}
	if len(pk) == 0 {
		return "0"
	}
	q := make([]string, len(pk))
	for i, c := range pk {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return fmt.Sprintf("(abs(hashtextextended(ROW(%s)::text, 0)) %% %d)", strings.Join(q, ", "), bucketSize)
}

// topoSort orders ts so that a table comes after those it references.
func topoSort(ts []table, refs map[uint32][]uint32) []table {
	byOID := map[uint32]table{}
	for _, t := range ts {
		byOID[t.oid] = t
	}
	seen := map[uint32]bool{}
	var out []table
	var visit func(t table)
	visit = func(t table) {
		if seen[t.oid] {
			return
		}
		seen[t.oid] = true
		for _, o := range refs[t.oid] {
			if p, ok := byOID[o]; ok {
				visit(p)
			}
		}
		out = append(out, t)
	}
	for _, t := range ts {
		visit(t)
	}
	return out
}

// pair is a source table and its target; both are bucketed by the
// source's expression.
type pair struct{ src, dst table }

// pairs matches the source's tables with the target's, by name.
func (m *mover) pairs(ctx context.Context) ([]pair, error) {
	srcT, err := m.tables(ctx, m.src)
	if err != nil {
		return nil, fmt.Errorf("source tables: %w", err)
	}
	dstT, err := m.tables(ctx, m.dst)
	if err != nil {
		return nil, fmt.Errorf("target tables: %w", err)
	}
	byName := map[string]table{}
	for _, t := range dstT {
		byName[t.name] = t
	}
	// The target's order: parents first there.
	order := map[string]int{}
	for i, t := range dstT {
		order[t.name] = i
	}
	var out []pair
	for _, s := range srcT {
		d, ok := byName[s.name]
		if !ok {
			return nil, fmt.Errorf("table %s has no counterpart named %q in placement %q", s.ident, s.name, m.dst.Name)
		}
		if !slices.Equal(s.cols, d.cols) || !slices.Equal(s.types, d.types) {
			return nil, fmt.Errorf("table %s and %s differ in their columns: %s (%s) against %s (%s)", s.ident, d.ident,
				strings.Join(s.cols, ", "), strings.Join(s.types, ", "), strings.Join(d.cols, ", "), strings.Join(d.types, ", "))
		}
		d.bucket, d.hashed = s.bucket, s.hashed
		out = append(out, pair{s, d})
	}
	slices.SortStableFunc(out, func(a, b pair) int { return order[a.dst.name] - order[b.dst.name] })
	return out, nil
}

// stableText are the settings under which rows are read, checksummed and
// written on both sides: the same value has the same text everywhere.
const stableText = `SELECT set_config($1, $2, true), set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, MDY', true),
	set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true), set_config('bytea_output', 'hex', true)`

// enterTenant sets the tenant's RLS setting (FORCE binds the owner too) and
// the stable text settings for the rest of tx.
func (m *mover) enterTenant(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, stableText, m.r.cfg.Setting, m.t.ID)
	return err
}

// job is a table to copy: all its rows of the tenant (buckets nil), or
// those of some buckets, replacing what the target holds of them.
type job struct {
	pair
	buckets []int64
	replace bool
}

func (j job) where(id string) string {
	w := "tenant_id::text = " + quoteLiteral(id)
	if j.buckets != nil {
		w += " AND " + bucketIn(j.src.bucket, j.buckets)
	}
	return w
}

// bucketIn is the condition that a row is in one of buckets.
func bucketIn(expr string, buckets []int64) string {
	b := make([]string, len(buckets))
	for i, n := range buckets {
		b[i] = fmt.Sprint(n)
	}
	return expr + " IN (" + strings.Join(b, ", ") + ")"
}

// copyJobs copies jobs from one snapshot of the source into the target, in
// one target transaction. Into a bridge or silo, which serves no one until
// the switch, the rows go straight in by COPY: inside that transaction the
// touched tables' row level security is not forced (the owner copies; the
// app role stays bound) and the foreign keys that reach them are dropped,
// then added again (one validation each) and the forcing restored, so no
// other transaction ever sees them otherwise. Into a pool, whose tables
// serve other tenants, every row goes through a temporary table and an
// INSERT under the tenant's policy.
func (m *mover) copyJobs(ctx context.Context, step string, jobs []job) error {
	srcTx, err := m.src.Owner.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer func() { _ = srcTx.Rollback(context.WithoutCancel(ctx)) }()
	if err := m.enterTenant(ctx, srcTx); err != nil {
		return err
	}
	direct := m.dst.Kind != Pool
	return pgx.BeginFunc(ctx, m.dst.Owner, func(dstTx pgx.Tx) error {
		if err := m.enterTenant(ctx, dstTx); err != nil {
			return err
		}
		var restore []string
		if direct {
			var err error
			if restore, err = m.loosen(ctx, dstTx, jobs); err != nil {
				return err
			}
		}
		for i := len(jobs) - 1; i >= 0; i-- {
			if !jobs[i].replace {
				continue
			}
			if _, err := dstTx.Exec(ctx, "DELETE FROM "+jobs[i].dst.ident+" WHERE "+jobs[i].where(m.t.ID)); err != nil {
				return fmt.Errorf("empty %s: %w", jobs[i].dst.ident, err)
			}
		}
		var total int64
		for i, j := range jobs {
			n, err := m.copyTable(ctx, srcTx, dstTx, j, i, direct)
			if err != nil {
				return fmt.Errorf("copy %s to %s: %w", j.src.ident, j.dst.ident, err)
			}
			total += n
			m.res.Rows += n
			m.event(MoveEvent{Step: step, Table: j.dst.ident, Tables: len(jobs), TablesDone: i + 1, Rows: total})
		}
		if len(restore) > 0 {
			return rls.ExecEach(ctx, dstTx.Conn().PgConn(), restore)
		}
		return nil
	})
}

// loosen drops, inside tx, the foreign keys from and to the jobs' target
// tables and their forcing of row level security, and returns the
// statements that restore both.
func (m *mover) loosen(ctx context.Context, tx pgx.Tx, jobs []job) ([]string, error) {
	oids := make([]uint32, len(jobs))
	for i, j := range jobs {
		oids[i] = j.dst.oid
	}
	rows, _ := tx.Query(ctx, `SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname),
			format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
		FROM pg_constraint WHERE contype = 'f' AND (conrelid = ANY($1) OR confrelid = ANY($1)) ORDER BY conrelid, conname`, oids)
	var drop, add []string
	var d, a string
	if _, err := pgx.ForEachRow(rows, []any{&d, &a}, func() error {
		drop, add = append(drop, d), append(add, a)
		return nil
	}); err != nil {
		return nil, err
	}
	for _, j := range jobs {
		drop = append(drop, "ALTER TABLE "+j.dst.ident+" NO FORCE ROW LEVEL SECURITY")
		add = append(add, "ALTER TABLE "+j.dst.ident+" FORCE ROW LEVEL SECURITY")
	}
	if err := rls.ExecEach(ctx, tx.Conn().PgConn(), drop); err != nil {
		return nil, err
	}
	return add, nil
}

// copyTable streams one job's rows from the source's snapshot into the
// target: by COPY into the table (direct), or into a temporary table and
// then by INSERT (COPY FROM is refused on a table under row level
// security), so every row passes the target's policy.
func (m *mover) copyTable(ctx context.Context, srcTx, dstTx pgx.Tx, j job, i int, direct bool) (int64, error) {
	cols := j.dst.colList()
	into := j.dst.ident
	if !direct {
		into = pgx.Identifier{fmt.Sprintf("tenancy_move_%d", i)}.Sanitize()
		if _, err := dstTx.Exec(ctx, "CREATE TEMPORARY TABLE "+into+" (LIKE "+j.dst.ident+") ON COMMIT DROP"); err != nil {
			return 0, err
		}
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := srcTx.Conn().PgConn().CopyTo(ctx, pw,
			"COPY (SELECT "+j.src.colList()+" FROM "+j.src.ident+" WHERE "+j.where(m.t.ID)+") TO STDOUT (FORMAT binary)")
		pw.CloseWithError(err)
		done <- err
	}()
	ct, inErr := dstTx.Conn().PgConn().CopyFrom(ctx, pr, "COPY "+into+" ("+cols+") FROM STDIN (FORMAT binary)")
	_ = pr.CloseWithError(errors.New("copy ended"))
	outErr := <-done
	if outErr != nil {
		return 0, fmt.Errorf("read the source: %w", outErr)
	}
	if inErr != nil {
		return 0, fmt.Errorf("write the target: %w", inErr)
	}
	if direct {
		return ct.RowsAffected(), nil
	}
	ct, err := dstTx.Exec(ctx, "INSERT INTO "+j.dst.ident+" ("+cols+") OVERRIDING SYSTEM VALUE SELECT "+cols+" FROM "+into)
	if err != nil {
		return 0, err
	}
	if _, err := dstTx.Exec(ctx, "DROP TABLE "+into); err != nil {
		return 0, err
	}
	return ct.RowsAffected(), nil
}

// copyAll copies every table of the tenant.
func (m *mover) copyAll(ctx context.Context) error {
	ps, err := m.pairs(ctx)
	if err != nil {
		return err
	}
	m.res.Tables = len(ps)
	jobs := make([]job, len(ps))
	for i, p := range ps {
		jobs[i] = job{pair: p}
	}
	return m.copyJobs(ctx, MoveCopy, jobs)
}

// fenceNames are the two triggers of t's fence on a table.
func fenceNames(t tenant.Tenant) (writes, removals string) {
	sum := sha256.Sum256([]byte(t.ID))
	h := hex.EncodeToString(sum[:8])
	return "tenancy_moved_" + h + "_w", "tenancy_moved_" + h + "_d"
}

// fence creates the fence on every source table of the tenant: triggers
// that refuse the tenant's inserts, updates and deletes (from any role but
// the owner's, which the move itself and migrations use). Creating a
// trigger waits for the transactions that wrote to the table, so when the
// fence stands every earlier write of the tenant has committed or rolled
// back, and none can follow.
func (m *mover) fence(ctx context.Context) error {
	ts, err := m.tables(ctx, m.src)
	if err != nil {
		return err
	}
	w, d := fenceNames(m.t)
	id, to := quoteLiteral(m.t.ID), quoteLiteral(m.dst.Name)
	for {
		err := pgx.BeginFunc(ctx, m.src.Owner, func(tx pgx.Tx) error {
			var owner string
			if err := tx.QueryRow(ctx, "SELECT current_user::text, set_config('lock_timeout', $1, true)", fmt.Sprintf("%dms", m.opts.LockTimeout.Milliseconds())).Scan(&owner, nil); err != nil {
				return err
			}
			notOwner := " AND current_user <> " + quoteLiteral(owner)
			for _, t := range ts {
				for _, s := range []string{
					"CREATE OR REPLACE TRIGGER " + pgx.Identifier{w}.Sanitize() + " BEFORE INSERT OR UPDATE ON " + t.ident +
						" FOR EACH ROW WHEN (NEW.tenant_id::text = " + id + notOwner + ") EXECUTE FUNCTION tenancy.refuse_moved(" + id + ", " + to + ")",
					"CREATE OR REPLACE TRIGGER " + pgx.Identifier{d}.Sanitize() + " BEFORE UPDATE OR DELETE ON " + t.ident +
						" FOR EACH ROW WHEN (OLD.tenant_id::text = " + id + notOwner + ") EXECUTE FUNCTION tenancy.refuse_moved(" + id + ", " + to + ")",
				} {
					if _, err := tx.Exec(ctx, s); err != nil {
						return err
					}
				}
			}
			return nil
		})
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55P03" && ctx.Err() == nil { // lock_not_available
			m.event(MoveEvent{Step: MoveFreeze, Table: "(waiting for the transactions writing the tenant's tables)"})
			continue
		}
		return err
	}
}

// unfence drops t's fence from the tables of p (where t was once moved
// away from, and now comes back).
func (m *mover) unfence(ctx context.Context, p *placed) error {
	ts, err := m.tables(ctx, p)
	if err != nil {
		return err
	}
	w, d := fenceNames(m.t)
	for _, t := range ts {
		for _, name := range []string{w, d} {
			if _, err := p.Owner.Exec(ctx, "DROP TRIGGER IF EXISTS "+pgx.Identifier{name}.Sanitize()+" ON "+t.ident); err != nil {
				return err
			}
		}
	}
	return nil
}

// sums is a bucket's row count and checksum.
type sums struct{ rows, sum string }

func (s sums) String() string { return "rows=" + s.rows + " sum=" + s.sum }

// checksums reads, per bucket, the tenant's row count and an
// order-independent checksum (the sum of a 64-bit hash of each row: of its
// values where every column's type can be hashed, else of its text) of
// each table, in one transaction of pool.
func (m *mover) checksums(ctx context.Context, pool *pgxpool.Pool, ts []table) ([]map[int64]sums, error) {
	out := make([]map[int64]sums, len(ts))
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := m.enterTenant(ctx, tx); err != nil {
			return err
		}
		for i, t := range ts {
			hash := "hashtextextended(ROW(" + t.colList() + ")::text, 0)"
			if t.hashed {
				hash = "hash_record_extended(ROW(" + t.colList() + "), 0)"
			}
			where := " WHERE tenant_id::text = $1"
			if t.only != nil {
				where += " AND " + bucketIn(t.bucket, t.only)
			}
			rows, _ := tx.Query(ctx, "SELECT "+t.bucket+"::bigint, count(*)::text, sum("+hash+"::numeric)::text FROM "+
				t.ident+where+" GROUP BY 1", m.t.ID)
			out[i] = map[int64]sums{}
			var b int64
			var s sums
			if _, err := pgx.ForEachRow(rows, []any{&b, &s.rows, &s.sum}, func() error {
				out[i][b] = s
				return nil
			}); err != nil {
				return fmt.Errorf("checksum %s: %w", t.ident, err)
			}
		}
		return nil
	})
	return out, err
}

// change is what diff found different in a pair.
type change struct {
	pair
	buckets        []int64
	srcSum, dstSum sums // the table's totals, for a MismatchError
}

// diff compares every pair, both sides read at once, and returns the pairs
// that differ with their differing buckets.
func (m *mover) diff(ctx context.Context, ps []pair) ([]change, error) {
	srcT, dstT := make([]table, len(ps)), make([]table, len(ps))
	for i, p := range ps {
		srcT[i], dstT[i] = p.src, p.dst
	}
	var b []map[int64]sums
	var bErr error
	done := make(chan struct{})
	go func() { defer close(done); b, bErr = m.checksums(ctx, m.dst.Owner, dstT) }()
	a, aErr := m.checksums(ctx, m.src.Owner, srcT)
	<-done
	if err := errors.Join(aErr, bErr); err != nil {
		return nil, err
	}
	var out []change
	for i := range ps {
		var c change
		for k, v := range a[i] {
			if b[i][k] != v {
				c.buckets = append(c.buckets, k)
			}
		}
		for k := range b[i] {
			if _, ok := a[i][k]; !ok {
				c.buckets = append(c.buckets, k)
			}
		}
		if len(c.buckets) > 0 {
			slices.Sort(c.buckets)
			c.pair, c.srcSum, c.dstSum = ps[i], total(a[i]), total(b[i])
			out = append(out, c)
		}
	}
	return out, nil
}

// total is a table's count and checksum over its buckets.
func total(bs map[int64]sums) sums {
	var rows, sum big.Int
	for _, s := range bs {
		var r, x big.Int
		r.SetString(s.rows, 10)
		x.SetString(s.sum, 10)
		rows.Add(&rows, &r)
		sum.Add(&sum, &x)
	}
	return sums{rows.String(), sum.String()}
}

// sync copies again the buckets written since the copy's snapshot; into a
// pool, a changed table that other tenant tables reference goes whole, with
// those tables (their foreign keys stay in force there). With sequences it
// then brings the target's sequences up to the source's.
func (m *mover) sync(ctx context.Context, step string, sequences bool) error {
	ps, err := m.pairs(ctx)
	if err != nil {
		return err
	}
	m.res.Tables = len(ps)
	changed, err := m.diff(ctx, ps)
	if err != nil {
		return err
	}
	m.recopied = nil
	if len(changed) > 0 {
		jobs, err := m.jobsFor(ctx, ps, changed)
		if err != nil {
			return err
		}
		if err := m.copyJobs(ctx, step, jobs); err != nil {
			return err
		}
		m.recopied = jobs
	}
	m.synced = true
	if !sequences {
		return nil
	}
	return m.syncSequences(ctx, false)
}

// jobsFor turns changes into copy jobs, in the order of ps.
func (m *mover) jobsFor(ctx context.Context, ps []pair, changed []change) ([]job, error) {
	buckets := map[uint32][]int64{}
	for _, c := range changed {
		buckets[c.pair.dst.oid] = c.buckets
	}
	whole := map[uint32]bool{}
	if m.dst.Kind == Pool {
		oids := make([]uint32, len(ps))
		for i, p := range ps {
			oids[i] = p.dst.oid
		}
		rows, _ := m.dst.Owner.Query(ctx, `SELECT DISTINCT conrelid::oid, confrelid::oid FROM pg_constraint
			WHERE contype = 'f' AND conrelid = ANY($1) AND confrelid = ANY($1)`, oids)
		referrers := map[uint32][]uint32{}
		var from, onto uint32
		if _, err := pgx.ForEachRow(rows, []any{&from, &onto}, func() error {
			referrers[onto] = append(referrers[onto], from)
			return nil
		}); err != nil {
			return nil, err
		}
		var mark func(o uint32)
		mark = func(o uint32) {
			if whole[o] {
				return
			}
			whole[o] = true
			for _, f := range referrers[o] {
				mark(f)
			}
		}
		for _, c := range changed {
			if len(referrers[c.pair.dst.oid]) > 0 {
				mark(c.pair.dst.oid)
			}
		}
	}
	var out []job
	for _, p := range ps {
		switch {
		case whole[p.dst.oid]:
			out = append(out, job{pair: p, replace: true})
		case buckets[p.dst.oid] != nil:
			out = append(out, job{pair: p, buckets: buckets[p.dst.oid], replace: true})
		}
	}
	return out, nil
}

// sequence is a sequence owned by a column of one of the tenant's tables.
type sequence struct {
	key   string // table.column, which pairs source and target
	ident string
	last  *int64
}

func (m *mover) sequences(ctx context.Context, p *placed) (map[string]sequence, error) {
	ts, err := m.tables(ctx, p)
	if err != nil {
		return nil, err
	}
	oids := make([]uint32, len(ts))
	for i, t := range ts {
		oids[i] = t.oid
	}
	rows, _ := p.Owner.Query(ctx, `SELECT c.relname || '.' || a.attname, s.oid::regclass::text, pg_sequence_last_value(s.oid)
		FROM pg_depend d
		JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
		JOIN pg_class c ON c.oid = d.refobjid
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
		WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND c.oid = ANY($1)`, oids)
	out := map[string]sequence{}
	var s sequence
	_, err = pgx.ForEachRow(rows, []any{&s.key, &s.ident, &s.last}, func() error {
		out[s.key] = s
		return nil
	})
	return out, err
}

// syncSequences brings each target sequence up to its source's last value
// (never down: a pool's sequences are shared); with check it only compares.
func (m *mover) syncSequences(ctx context.Context, check bool) error {
	src, err := m.sequences(ctx, m.src)
	if err != nil {
		return err
	}
	dst, err := m.sequences(ctx, m.dst)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(src))
	for k := range src {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s := src[k]
		d, ok := dst[k]
		if s.last == nil {
			continue
		}
		if !ok {
			return fmt.Errorf("sequence %s (of %s) has no counterpart in placement %q", s.ident, k, m.dst.Name)
		}
		if check {
			if d.last == nil || *d.last < *s.last {
				target := "never used"
				if d.last != nil {
					target = fmt.Sprint(*d.last)
				}
				return &MismatchError{Object: d.ident, Source: fmt.Sprint(*s.last), Target: target}
			}
			continue
		}
		if _, err := m.dst.Owner.Exec(ctx, "SELECT setval($1::regclass, greatest($2::bigint, coalesce(pg_sequence_last_value($1::regclass), $2::bigint)), true)", d.ident, *s.last); err != nil {
			return fmt.Errorf("set %s: %w", d.ident, err)
		}
	}
	return nil
}

// verify compares the two sides. The sync compared every bucket of every
// table with the source frozen, and only the tenant's move writes its rows
// in the target before the switch, so what remains to compare are the
// buckets the sync copied again (all of them when verify runs on its own),
// and the sequences.
func (m *mover) verify(ctx context.Context) error {
	var ps []pair
	if m.synced {
		for _, j := range m.recopied {
			p := j.pair
			p.src.only, p.dst.only = j.buckets, j.buckets
			if j.buckets == nil {
				p.src.only, p.dst.only = nil, nil
			}
			ps = append(ps, p)
		}
	} else {
		var err error
		if ps, err = m.pairs(ctx); err != nil {
			return err
		}
	}
	changed, err := m.diff(ctx, ps)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		c := changed[0]
		return &MismatchError{Object: c.pair.dst.ident, Source: c.srcSum.String(), Target: c.dstSum.String()}
	}
	return m.syncSequences(ctx, true)
}

// switchOver records the target as the tenant's placement and announces it.
func (m *mover) switchOver(ctx context.Context) error {
	return pgx.BeginFunc(ctx, m.r.cfg.Owner, func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, `UPDATE tenancy.tenants SET placement = $2, move_from = $3, move_to = NULL, move_step = $4,
			schema_name = $5, last_error = NULL, updated_at = now() WHERE id = $1 AND move_step = $6`,
			m.t.ID, m.r.stored(m.dst), m.src.Name, stepCleanup, nullable(m.schemaIn(m.dst)), stepCutover)
		if err != nil {
			return err
		}
		if ct.RowsAffected() != 1 {
			return fmt.Errorf("%w: tenant %q's move changed meanwhile", ErrMoveInProgress, m.t.Slug)
		}
		return notify(ctx, tx, m.t)
	})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// cleanup removes the tenant from src and ends the move.
func (m *mover) cleanup(ctx context.Context, src *placed) (MoveResult, error) {
	if err := m.enter(ctx, MoveCleanup); err != nil {
		return m.res, err
	}
	if err := src.reg.dropLocal(ctx, m.t, m.schemaIn(src), !src.local); err != nil {
		return m.res, m.fail(MoveCleanup, err)
	}
	if _, err := m.r.cfg.Owner.Exec(ctx, `UPDATE tenancy.tenants SET move_step = NULL, move_from = NULL, updated_at = now()
		WHERE id = $1 AND move_step = $2`, m.t.ID, stepCleanup); err != nil {
		return m.res, m.fail(MoveCleanup, err)
	}
	m.res.Elapsed = time.Since(m.start)
	m.r.cfg.Logger.InfoContext(ctx, "tenant moved", "tenant_id", m.t.ID, "tenant_slug", m.t.Slug,
		"from", m.res.From, "to", m.res.To, "rows", m.res.Rows, "pause", m.res.Pause)
	return m.res, nil
}
