package provision_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/pgtenant"
	"github.com/tenancykit/tenancy/provision"
)

// TestBootstrap: from nothing, Bootstrap makes both roles and the database;
// provision and pgtenant then work with them (the app role passes
// pgtenant's privilege check); a rerun changes nothing and succeeds; a
// privileged or member app role is refused, not altered.
func TestBootstrap(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pg.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	base := "tt_" + testenv.NewTenant("boot").Slug // unique in every run
	cfg := provision.BootstrapConfig{Database: base + "_db", OwnerRole: base + "_owner", OwnerPassword: "o'wner pw", AppRole: base + "_app", AppPassword: "app pw"}
	unsafe := []string{"BYPASSRLS", "CREATEROLE", "CREATEDB", "REPLICATION"}
	t.Cleanup(func() {
		// Its own connection: the test's is closed by then.
		c, err := pgx.Connect(ctx, pg.AdminURL)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{cfg.Database}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		roles := []string{cfg.AppRole, cfg.OwnerRole, base + "_group", base + "_escalate"}
		for _, a := range unsafe {
			roles = append(roles, base+"_"+a, base+"_owner_"+a)
		}
		for _, r := range roles {
			if _, err := c.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	for range 2 { // the second run finds everything in place
		if err := provision.Bootstrap(ctx, admin, cfg); err != nil {
			t.Fatal(err)
		}
	}
	dsn := func(role, password string) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword(role, password),
			Host: net.JoinHostPort(admin.Config().Host, strconv.Itoa(int(admin.Config().Port))), Path: "/" + cfg.Database}
		return u.String()
	}
	owner, err := pgxpool.New(ctx, dsn(cfg.OwnerRole, cfg.OwnerPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	reg, err := provision.New(ctx, provision.Config{Owner: owner, AppRole: cfg.AppRole, Logger: slog.New(slog.DiscardHandler),
		Builder: provision.DDL("CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text)")})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := reg.Create(ctx, provision.Spec{Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	appCfg, err := pgxpool.ParseConfig(dsn(cfg.AppRole, cfg.AppPassword))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: appCfg})
	if err != nil {
		t.Fatalf("pgtenant with the bootstrapped app role: %v", err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctxFor(rec.Tenant()), "INSERT INTO notes (body) VALUES ('hi')"); err != nil {
		t.Fatal(err)
	}
	if findings, err := reg.Audit(ctx); err != nil || len(findings) != 0 {
		t.Errorf("Audit after Bootstrap: %v, %v", findings, err)
	}

	// Unsafe existing roles are refused and left as they are.
	for _, a := range unsafe {
		for _, as := range []string{"app", "owner"} {
			name := base + "_" + a
			if as == "owner" {
				name = base + "_owner_" + a
			}
			if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN %s", pgx.Identifier{name}.Sanitize(), a)); err != nil {
				t.Fatal(err)
			}
			bad := cfg
			if as == "app" {
				bad.AppRole = name
			} else {
				bad.OwnerRole = name
			}
			err := provision.Bootstrap(ctx, admin, bad)
			if as == "owner" && a == "CREATEDB" {
				if err != nil {
					t.Errorf("owner with CREATEDB: %v", err)
				}
				continue
			}
			if !errors.Is(err, provision.ErrUnsafeRole) || !strings.Contains(err.Error(), a) {
				t.Errorf("%s role with %s: %v, want ErrUnsafeRole naming %s", as, a, err, a)
			}
			var still bool
			if err := admin.QueryRow(ctx, "SELECT rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication FROM pg_roles WHERE rolname = $1", name).Scan(&still); err != nil || !still {
				t.Errorf("%s role with %s was altered: %v", as, a, err)
			}
		}
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE %[1]s; GRANT %[1]s TO %[2]s", pgx.Identifier{base + "_group"}.Sanitize(), pgx.Identifier{cfg.AppRole}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	if err := provision.Bootstrap(ctx, admin, cfg); !errors.Is(err, provision.ErrUnsafeRole) {
		t.Errorf("member app role: %v, want ErrUnsafeRole", err)
	}
	if err := provision.Bootstrap(ctx, admin, provision.BootstrapConfig{Database: "x", OwnerRole: "same", AppRole: "same"}); !errors.Is(err, provision.ErrInvalidConfig) {
		t.Errorf("owner = app: %v", err)
	}
}

// TestCreateRoleEscalation: an app role with CREATEROLE can grant itself
// the owner role, take it and read another tenant's rows past forced row
// level security — shown here with raw pgx — so Bootstrap refuses it as the
// app role and pgtenant.New refuses to pool it; with AllowPrivilegedRole,
// the pool still refuses the role grant on the statement path.
func TestCreateRoleEscalation(t *testing.T) {
	t.Parallel()
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pg.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	url := pg.CreateRole(t, "NOSUPERUSER NOBYPASSRLS CREATEROLE")
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	escalator := cfg.ConnConfig.User
	reg := newRegistry(t, pg, nil)
	a, err := reg.Create(ctx, provision.Spec{Slug: slug("esc")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Delete(context.Background(), a.Slug) })
	b, err := reg.Create(ctx, provision.Spec{Slug: slug("esc")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Delete(context.Background(), b.Slug) })
	table := pgx.Identifier{b.SchemaName, "notes"}.Sanitize()
	if _, err := admin.Exec(ctx, "GRANT USAGE ON SCHEMA "+pgx.Identifier{b.SchemaName}.Sanitize()+" TO "+pgx.Identifier{escalator}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "INSERT INTO "+table+" (tenant_id, body) VALUES ($1, 'b secret')", b.ID); err != nil {
		t.Fatal(err)
	}

	// The threat, undefended: raw pgx as the CREATEROLE role.
	raw, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close(ctx)
	var body string
	err = pgx.BeginFunc(ctx, raw, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "GRANT "+pgx.Identifier{pg.OwnerRole}.Sanitize()+" TO CURRENT_USER"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{pg.OwnerRole}.Sanitize()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "ALTER TABLE "+table+" NO FORCE ROW LEVEL SECURITY"); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT body FROM "+table).Scan(&body); err != nil {
			return err
		}
		return errors.New("roll back") // leave B's table as it was
	})
	if body != "b secret" {
		t.Fatalf("the escalation did not work undefended (%v): this test would prove nothing", err)
	}

	// Bootstrap and New refuse the role.
	bcfg := provision.BootstrapConfig{Database: pg.Database, OwnerRole: pg.OwnerRole, AppRole: escalator}
	if err := provision.Bootstrap(ctx, admin, bcfg); !errors.Is(err, provision.ErrUnsafeRole) || !strings.Contains(err.Error(), "CREATEROLE") {
		t.Errorf("Bootstrap with a CREATEROLE app role: %v, want ErrUnsafeRole naming CREATEROLE", err)
	}
	_, err = pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg})
	var pe *pgtenant.PrivilegedRoleError
	if !errors.As(err, &pe) || pe.Attribute != "CREATEROLE" {
		t.Errorf("pgtenant.New with a CREATEROLE role: %v, want *PrivilegedRoleError for CREATEROLE", err)
	}
	// Allowed anyway, the grant is refused before I/O on every path.
	pool, err := pgtenant.New(ctx, pgtenant.Config{PoolConfig: cfg, AllowPrivilegedRole: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	grant := "GRANT " + pgx.Identifier{pg.OwnerRole}.Sanitize() + " TO CURRENT_USER"
	if _, err := pool.Exec(ctxFor(a.Tenant()), grant); !errors.Is(err, pgtenant.ErrSessionState) {
		t.Errorf("role grant on the pool: %v, want ErrSessionState", err)
	}
	conn, err := pool.Acquire(ctxFor(a.Tenant()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctxFor(a.Tenant()), grant)
	conn.Release()
	if !errors.Is(err, pgtenant.ErrSessionState) {
		t.Errorf("role grant on an Acquired Conn: %v, want ErrSessionState", err)
	}
	var member bool
	if err := admin.QueryRow(ctx, "SELECT pg_has_role($1, $2, 'MEMBER')", escalator, pg.OwnerRole).Scan(&member); err != nil || member {
		t.Errorf("the role became a member of the owner: %v %v", member, err)
	}
}

// TestNewRefusesAMissingAppRole: a registry whose app role does not exist
// would fail every Create at its GRANT; New says so first.
func TestNewRefusesAMissingAppRole(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	missing := testenv.UniqueID("no_such_role")
	_, err := provision.New(context.Background(), provision.Config{Owner: pg.OwnerPool(t), AppRole: missing, Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, provision.ErrInvalidConfig) || !strings.Contains(err.Error(), missing) {
		t.Errorf("New with a missing app role: %v, want ErrInvalidConfig naming %s", err, missing)
	}
}
