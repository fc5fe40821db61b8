// Command tenancyctl manages the tenants of a Tenancy database from a shell:
// create, list, suspend, resume and delete them, migrate the fleet with the
// tenant migrations of a directory, show each tenant's version, and audit
// the database for anything that would weaken isolation.
//
//	tenancyctl [-database URL] [-app-role NAME] <command> [flags] [args]
//
//	tenancyctl create acme -name "Acme Inc." -dir migrations/tenant
//	tenancyctl list -status active
//	tenancyctl suspend acme
//	tenancyctl resume acme
//	tenancyctl delete acme
//	tenancyctl migrate -dir migrations/tenant -workers 4
//	tenancyctl status -dir migrations/tenant
//	tenancyctl audit
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

-database defaults to $DATABASE_URL (the owner role), -app-role to $APP_ROLE.
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
	err := dispatch(ctx, *database, *appRole, global.Arg(0), global.Args()[1:], stdout, stderr)
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

func dispatch(ctx context.Context, database, appRole, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tenancyctl "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var name, id, status, dir *string
	var workers *int
	var empty *bool
	positional := 0
	switch cmd {
	case "create":
		name = fs.String("name", "", "display name")
		id = fs.String("id", "", "tenant ID (default: a new UUID)")
		dir = fs.String("dir", "", "directory of goose SQL migrations that build the tenant's schema")
		empty = fs.Bool("empty", false, "create the tenant with an empty schema, for a service that migrates it later (instead of -dir)")
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
	case dir != nil && *dir == "":
		return usageError{cmd + " needs -dir: the directory of the tenant migrations"}
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
	var m *migrate.Migrator
	if dir != nil {
		cc, err := pgx.ParseConfig(database)
		if err != nil {
			return err
		}
		if m, err = migrate.New(migrate.Config{ConnConfig: cc, Tenant: os.DirFS(*dir), AppRole: appRole,
			Concurrency: intOr(workers, 2), Logger: slog.New(slog.DiscardHandler), Progress: progressPrinter(stderr)}); err != nil {
			return err
		}
	}
	cfg := provision.Config{Owner: owner, AppRole: appRole, Logger: slog.New(slog.DiscardHandler)}
	if m != nil {
		cfg.SchemaBuilder = m
	}
	reg, err := provision.New(ctx, cfg)
	if err != nil {
		return err
	}

	switch cmd {
	case "create":
		rec, err := reg.Create(ctx, provision.Spec{Slug: rest[0], Name: *name, ID: *id})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s (id %s, schema %s)\n", rec.Slug, rec.ID, rec.SchemaName)
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SLUG\tID\tSTATUS\tNAME\tCREATED")
		after := ""
		for {
			page, err := reg.List(ctx, provision.ListOptions{After: after, Status: provision.Status(*status), Limit: 500})
			if err != nil {
				return err
			}
			for _, r := range page {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Slug, r.ID, r.Status, r.Name, r.CreatedAt.Format(time.RFC3339))
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
