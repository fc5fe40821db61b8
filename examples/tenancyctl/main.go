// Command tenancyctl manages the tenants of a Tenancy database from a shell:
// create, list, suspend, resume and delete them, migrate the fleet with the
// tenant migrations of a directory, show each tenant's version, and audit
// the database for anything that would weaken isolation, and move a tenant
// between placements (pool, bridge, silo) with a progress bar.
//
//	tenancyctl [-database URL] [-app-role NAME] [-placement NAME=KIND:URL ...] <command> [flags] [args]
//
//	tenancyctl create acme -name "Acme Inc." -dir migrations/tenant
//	tenancyctl list -status active
//	tenancyctl suspend acme
//	tenancyctl resume acme
//	tenancyctl delete acme
//	tenancyctl migrate -dir migrations/tenant -workers 4
//	tenancyctl status -dir migrations/tenant
//	tenancyctl audit
//	tenancyctl -placement big=silo:postgres://owner@db2/acme move acme -to big -dir migrations/tenant
//
// -placement (repeatable, or TENANCY_PLACEMENTS, space-separated) registers
// a placement: NAME=bridge:URL, NAME=silo:URL, or
// NAME=pool[schema.table,...]:URL with the pool's shared tables; URL
// connects to its database as the owner role, and the app role has the
// same name there. With -dir, a bridge or silo placement builds tenant
// schemas from the same migrations.
//
// -database (or DATABASE_URL) connects as the owner role; -app-role (or
// APP_ROLE) names the role the application connects as. Exit codes: 0 done,
// 1 the operation failed (or audit found problems, or a tenant failed to
// migrate), 2 the command line was wrong.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/migrate"
	"github.com/tenancykit/tenancy/provision"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a wrong command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `usage: tenancyctl [-database URL] [-app-role NAME] <command> [flags] [args]

commands:
  create <slug> -dir DIR [-name NAME] [-id ID]
                                        register a tenant, its schema built by DIR's
                                        tenant migrations (-empty instead: no tables)
  list [-status STATUS]                 list live tenants
  suspend <slug>                        refuse the tenant's requests
  resume <slug>                         serve a suspended tenant again
  delete <slug>                         drop the tenant's schema, keep a tombstone
  migrate -dir DIR [-workers N]         apply DIR's tenant migrations to every tenant
  status -dir DIR                       each tenant's version against DIR's latest
  audit                                 report what would weaken isolation
  move <slug> -to NAME [-dir DIR]       move the tenant to placement NAME, with progress
                                        (create takes -placement NAME too)

-database defaults to $DATABASE_URL (the owner role), -app-role to $APP_ROLE.
-placement NAME=KIND:URL (repeatable; default $TENANCY_PLACEMENTS) registers a
placement: bridge, silo, or pool[schema.table,...] with its shared tables.
Run "tenancyctl <command> -h" for a command's flags.
Exit codes: 0 done, 1 failed (or audit findings), 2 wrong command line.
`

// run is the program; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("tenancyctl", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.Usage = func() { fmt.Fprint(stderr, usage) }
	database := global.String("database", os.Getenv("DATABASE_URL"), "owner role connection URL")
	appRole := global.String("app-role", os.Getenv("APP_ROLE"), "the application's role")
	var placements []string
	global.Func("placement", "a placement, NAME=KIND:URL (repeatable)", func(v string) error {
		placements = append(placements, v)
		return nil
	})
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if global.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if len(placements) == 0 {
		placements = strings.Fields(os.Getenv("TENANCY_PLACEMENTS"))
	}
	err := dispatch(ctx, *database, *appRole, placements, global.Arg(0), global.Args()[1:], stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "tenancyctl: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "tenancyctl: %v\n", err)
		return 1
	}
}

func dispatch(ctx context.Context, database, appRole string, placements []string, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tenancyctl "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var name, id, status, dir, placement, to *string
	var workers *int
	var empty *bool
	positional := 0
	switch cmd {
	case "create":
		name = fs.String("name", "", "display name")
		id = fs.String("id", "", "tenant ID (default: a new UUID)")
		dir = fs.String("dir", "", "directory of goose SQL migrations that build the tenant's schema")
		empty = fs.Bool("empty", false, "create the tenant with an empty schema, for a service that migrates it later (instead of -dir)")
		placement = fs.String("placement", "", "the placement to create the tenant in (default: the -database's own)")
		positional = 1
	case "move":
		to = fs.String("to", "", "the placement to move the tenant to (required)")
		dir = fs.String("dir", "", "directory of goose SQL migrations that build the tenant's schema in the target (default: an empty schema)")
		positional = 1
	case "list":
		status = fs.String("status", "", "only tenants in this status (active, suspended, ...)")
	case "suspend", "resume", "delete":
		positional = 1
	case "migrate":
		dir = fs.String("dir", "", "directory of goose SQL migrations for tenant schemas (required)")
		workers = fs.Int("workers", 2, "tenant schemas migrated at once")
	case "status":
		dir = fs.String("dir", "", "directory of goose SQL migrations for tenant schemas (required)")
	case "audit":
	default:
		return usageError{fmt.Sprintf("unknown command %q; run tenancyctl -h", cmd)}
	}
	if positional == 1 {
		fs.Usage = func() { fmt.Fprintf(stderr, "usage: tenancyctl %s <slug>\n", cmd); fs.PrintDefaults() }
	}
	// Flags may come before or after the slug.
	var rest []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) > 0 {
			rest = append(rest, args[0])
			args = args[1:]
		}
	}
	if len(rest) != positional {
		return usageError{fmt.Sprintf("%s takes %d argument(s), got %d: %q", cmd, positional, len(rest), rest)}
	}
	switch {
	case empty != nil && *empty && *dir != "":
		return usageError{"create takes -dir or -empty, not both"}
	case empty != nil && *empty:
		dir = nil // an empty schema, asked for
	case dir != nil && *dir == "" && cmd == "create":
		// An active tenant with no tables would be served as if it were
		// ready: say how to build it, or that it is meant to be empty.
		return usageError{"create needs -dir: the directory of the tenant migrations that build its schema (or -empty for a schema with no tables, migrated later)"}
	case cmd == "move" && *to == "":
		return usageError{"move needs -to: the placement to move the tenant to"}
	case cmd == "move" && *dir == "":
		dir = nil
	case dir != nil && *dir == "":
		return usageError{cmd + " needs -dir: the directory of the tenant migrations"}
	}
	specs, err := parsePlacements(placements)
	if err != nil {
		return err
	}
	if database == "" {
		return usageError{"no database: set -database or DATABASE_URL (the owner role)"}
	}
	if appRole == "" {
		return usageError{"no app role: set -app-role or APP_ROLE (the role the application connects as)"}
	}

	owner, err := pgxpool.New(ctx, database)
	if err != nil {
		return err
	}
	defer owner.Close()
	migrator := func(url string) (*migrate.Migrator, error) {
		if dir == nil {
			return nil, nil
		}
		cc, err := pgx.ParseConfig(url)
		if err != nil {
			return nil, err
		}
		return migrate.New(migrate.Config{ConnConfig: cc, Tenant: os.DirFS(*dir), AppRole: appRole,
			Concurrency: intOr(workers, 2), Logger: slog.New(slog.DiscardHandler), Progress: progressPrinter(stderr)})
	}
	m, err := migrator(database)
	if err != nil {
		return err
	}
	cfg := provision.Config{Owner: owner, AppRole: appRole, Logger: slog.New(slog.DiscardHandler)}
	if m != nil {
		cfg.SchemaBuilder = m
	}
	for _, s := range specs {
		p := s.Placement
		if p.Owner, err = pgxpool.New(ctx, s.url); err != nil {
			return fmt.Errorf("placement %q: %w", p.Name, err)
		}
		defer p.Owner.Close()
		if p.Kind != provision.Pool {
			pm, err := migrator(s.url)
			if err != nil {
				return err
			}
			if pm != nil {
				p.SchemaBuilder = pm
			}
		}
		cfg.Placements = append(cfg.Placements, p)
	}
	reg, err := provision.New(ctx, cfg)
	if err != nil {
		return err
	}

	switch cmd {
	case "create":
		rec, err := reg.Create(ctx, provision.Spec{Slug: rest[0], Name: *name, ID: *id, Placement: *placement})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s (id %s, schema %s, placement %s)\n", rec.Slug, rec.ID, rec.SchemaName, rec.Placement)
	case "move":
		res, err := reg.Move(ctx, rest[0], *to, provision.MoveOptions{Progress: movePrinter(stderr)})
		if err != nil {
			return err
		}
		if res.From == res.To {
			fmt.Fprintf(stdout, "%s is in %s already\n", rest[0], res.To)
			return nil
		}
		fmt.Fprintf(stdout, "moved %s from %s to %s: %d tables, %d rows in %v, writes paused %v\n", rest[0], res.From, res.To,
			res.Tables, res.Rows, res.Elapsed.Round(time.Millisecond), res.Pause.Round(time.Millisecond))
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SLUG\tID\tSTATUS\tPLACEMENT\tNAME\tCREATED")
		after := ""
		for {
			page, err := reg.List(ctx, provision.ListOptions{After: after, Status: provision.Status(*status), Limit: 500})
			if err != nil {
				return err
			}
			for _, r := range page {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Slug, r.ID, r.Status, r.Placement, r.Name, r.CreatedAt.Format(time.RFC3339))
			}
			if len(page) < 500 {
				break
			}
			after = page[len(page)-1].Slug
		}
		return tw.Flush()
	case "suspend":
		if err := reg.Suspend(ctx, rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "suspended %s\n", rest[0])
	case "resume":
		if err := reg.Resume(ctx, rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "resumed %s\n", rest[0])
	case "delete":
		if err := reg.Delete(ctx, rest[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s\n", rest[0])
	case "migrate":
		rep, err := m.UpAll(ctx, reg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d migrated, %d up to date, %d failed of %d tenants in %v\n", rep.Migrated, rep.Skipped, rep.Failed, rep.Total, rep.Duration.Round(time.Millisecond))
		if err := rep.Err(); err != nil {
			return err
		}
	case "status":
		st, err := m.Status(ctx, reg)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SLUG\tVERSION\tLATEST\tPENDING")
		behind := 0
		for _, s := range st {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", s.Tenant.Slug, s.Current, s.Latest, s.Pending)
			if s.Pending > 0 {
				behind++
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d of %d tenants behind\n", behind, len(st))
	case "audit":
		findings, err := reg.Audit(ctx)
		if err != nil {
			return err
		}
		for _, f := range findings {
			fmt.Fprintln(stdout, f.String())
		}
		if len(findings) > 0 {
			return fmt.Errorf("audit: %d finding(s)", len(findings))
		}
		fmt.Fprintln(stdout, "audit: no findings")
	}
	return nil
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// progressPrinter renders migrate's progress: a bar redrawn in place with
// rate and ETA on a terminal, a plain line per 10 % otherwise (logs, CI).
func progressPrinter(w io.Writer) func(migrate.Progress) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	lastDecile := -1
	return func(p migrate.Progress) {
		if tty {
			const width = 30
			filled := width * p.Done / max(p.Total, 1)
			fmt.Fprintf(w, "\r[%s%s] %d/%d  %.1f tenants/s  ETA %v  %d failed ", strings.Repeat("#", filled), strings.Repeat("-", width-filled),
				p.Done, p.Total, p.Rate, p.ETA.Round(time.Second), p.Failed)
			if p.Done == p.Total {
				fmt.Fprintln(w)
			}
			return
		}
		if d := 10 * p.Done / max(p.Total, 1); d != lastDecile || p.Done == p.Total {
			lastDecile = d
			fmt.Fprintf(w, "migrated %d/%d tenants (%.1f/s, ETA %v, %d failed)\n", p.Done, p.Total, p.Rate, p.ETA.Round(time.Second), p.Failed)
		}
	}
}

// placementSpec is a -placement flag: the placement, and its owner URL.
type placementSpec struct {
	provision.Placement
	url string
}

// parsePlacements reads NAME=KIND:URL, KIND bridge, silo or
// pool[schema.table,...].
func parsePlacements(flags []string) ([]placementSpec, error) {
	var out []placementSpec
	for _, f := range flags {
		name, rest, ok1 := strings.Cut(f, "=")
		kind, url, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || name == "" || url == "" {
			return nil, usageError{fmt.Sprintf("-placement %q: want NAME=KIND:URL, KIND bridge, silo or pool[schema.table,...]", f)}
		}
		p := provision.Placement{Name: name}
		switch {
		case kind == "bridge":
			p.Kind = provision.Bridge
		case kind == "silo":
			p.Kind = provision.Silo
		case strings.HasPrefix(kind, "pool[") && strings.HasSuffix(kind, "]"):
			p.Kind = provision.Pool
			p.SharedTables = strings.Split(strings.TrimSuffix(strings.TrimPrefix(kind, "pool["), "]"), ",")
		default:
			return nil, usageError{fmt.Sprintf("-placement %q: kind %q; use bridge, silo or pool[schema.table,...]", f, kind)}
		}
		out = append(out, placementSpec{p, url})
	}
	return out, nil
}

// movePrinter renders a move's progress: a line redrawn in place on a
// terminal (step, tables, rows, elapsed), a line per step otherwise.
func movePrinter(w io.Writer) func(provision.MoveEvent) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return func(e provision.MoveEvent) {
		if tty {
			const width = 20
			filled := width * e.TablesDone / max(e.Tables, 1)
			fmt.Fprintf(w, "\r%-8s [%s%s] %d/%d tables  %d rows  %v ", e.Step, strings.Repeat("#", filled), strings.Repeat("-", width-filled),
				e.TablesDone, e.Tables, e.Rows, e.Elapsed.Round(time.Millisecond))
			if e.Step == provision.MoveCleanup {
				fmt.Fprintln(w)
			}
			return
		}
		if e.Table == "" {
			fmt.Fprintf(w, "move: %s (%v)\n", e.Step, e.Elapsed.Round(time.Millisecond))
		} else if e.Tables > 0 {
			fmt.Fprintf(w, "move: %s %s: %d/%d tables, %d rows\n", e.Step, e.Table, e.TablesDone, e.Tables, e.Rows)
		}
	}
}
