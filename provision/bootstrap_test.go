package provision_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
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
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{cfg.Database}.Sanitize()+" WITH (FORCE)")
		for _, r := range []string{cfg.AppRole, cfg.OwnerRole, base + "_group", base + "_bypass"} {
			_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
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
	for _, c := range []struct {
		name, setup string
	}{
		{"bypassrls", fmt.Sprintf("CREATE ROLE %s LOGIN BYPASSRLS", pgx.Identifier{base + "_bypass"}.Sanitize())},
		{"member", fmt.Sprintf("CREATE ROLE %s; GRANT %s TO %s", pgx.Identifier{base + "_group"}.Sanitize(), pgx.Identifier{base + "_group"}.Sanitize(), pgx.Identifier{cfg.AppRole}.Sanitize())},
	} {
		if _, err := admin.Exec(ctx, c.setup); err != nil {
			t.Fatal(err)
		}
		bad := cfg
		if c.name == "bypassrls" {
			bad.AppRole = base + "_bypass"
		}
		if err := provision.Bootstrap(ctx, admin, bad); !errors.Is(err, provision.ErrUnsafeRole) {
			t.Errorf("%s: %v, want ErrUnsafeRole", c.name, err)
		}
	}
	if err := provision.Bootstrap(ctx, admin, provision.BootstrapConfig{Database: "x", OwnerRole: "same", AppRole: "same"}); !errors.Is(err, provision.ErrInvalidConfig) {
		t.Errorf("owner = app: %v", err)
	}
}
