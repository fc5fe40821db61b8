package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/provision/provisiontest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestEndToEnd builds tenancyctl and drives a tenant through its life
// against a throwaway database: every command, its output and exit code.
func TestEndToEnd(t *testing.T) {
	env := provisiontest.New(t, provisiontest.Options{AdminURL: testenv.PostgreSQL(t).AdminURL})
	bin := filepath.Join(t.TempDir(), "tenancyctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "00001_notes.sql"), []byte("-- +goose Up\nCREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id text NOT NULL, body text);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+env.OwnerURL, "APP_ROLE="+env.AppRole)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	for _, c := range []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{nil, 2, "", "usage: tenancyctl"},
		{[]string{"-h"}, 0, "", "commands:"},
		{[]string{"bogus"}, 2, "", `unknown command "bogus"`},
		{[]string{"create"}, 2, "", "create takes 1 argument"},
		{[]string{"create", "acme", "-h"}, 0, "", "-name"},
		{[]string{"migrate"}, 2, "", "needs -dir"},
		{[]string{"create", "acme"}, 2, "", "create needs -dir"},
		{[]string{"create", "acme", "-dir", dir, "-empty"}, 2, "", "not both"},
		{[]string{"create", "Not A Slug", "-empty"}, 1, "", "slug"},
		{[]string{"create", "acme", "-name", "Acme Inc.", "-dir", dir}, 0, "created acme", ""},
		{[]string{"create", "acme", "-dir", dir}, 1, "", "already exists"},
		{[]string{"status", "-dir", dir}, 0, "0 of 1 tenants behind", ""},
		{[]string{"create", "globex", "-empty"}, 0, "created globex", ""},
		{[]string{"list"}, 0, "acme", ""},
		{[]string{"suspend", "acme"}, 0, "suspended acme", ""},
		{[]string{"list", "-status", "suspended"}, 0, "Acme Inc.", ""},
		{[]string{"resume", "acme"}, 0, "resumed acme", ""},
		{[]string{"resume", "acme"}, 1, "", "not suspended"},
		{[]string{"status", "-dir", dir}, 0, "1 of 2 tenants behind", ""},
		{[]string{"migrate", "-dir", dir, "-workers", "2"}, 0, "1 migrated, 1 up to date, 0 failed of 2 tenants", "migrated 1/1 tenants"},
		{[]string{"status", "-dir", dir}, 0, "0 of 2 tenants behind", ""},
		{[]string{"audit"}, 0, "audit: no findings", ""},
		{[]string{"delete", "acme"}, 0, "deleted acme", ""},
		{[]string{"delete", "globex"}, 0, "deleted globex", ""},
		{[]string{"suspend", "acme"}, 1, "", "not found"},
		{[]string{"-database", "postgres://nobody@127.0.0.1:1/none", "list"}, 1, "", "tenancyctl:"},
	} {
		out, errOut, code := ctl(c.args...)
		if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.inErr) {
			t.Errorf("tenancyctl %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q", c.args, code, out, errOut, c.code, c.out, c.inErr)
		}
	}
	if out, _, _ := ctl("list"); strings.Contains(out, "acme") {
		t.Errorf("a deleted tenant is listed:\n%s", out)
	}
}

// TestMoveCommand moves a tenant from the registry's database to a silo and
// then to a pool, through the command line: progress on stderr, the result
// on stdout, the rows along, and a clean audit.
func TestMoveCommand(t *testing.T) {
	main := testenv.PostgreSQL(t)
	home, silo, pool := main.NewDatabase(t), main.NewDatabase(t), main.NewDatabase(t)
	bin := filepath.Join(t.TempDir(), "tenancyctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	ddl := "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY, tenant_id text NOT NULL, body text, PRIMARY KEY (tenant_id, id))"
	if err := os.WriteFile(filepath.Join(dir, "00001_notes.sql"), []byte("-- +goose Up\n"+ddl+";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := pgxExec(ctx, pool.OwnerURL, strings.Replace(ddl, "notes", "public.notes", 1)); err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-placement", "big=silo:" + silo.OwnerURL, "-placement", "shared=pool[public.notes]:" + pool.OwnerURL}, args...)...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+home.OwnerURL, "APP_ROLE="+home.AppRole)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	if out, errOut, code := ctl("create", "acme", "-dir", dir); code != 0 || !strings.Contains(out, "placement default") {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	// Rows to move, as the owner in the tenant's scope.
	if _, err := pgxExec(ctx, home.OwnerURL, "SELECT set_config('app.tenant_id', (SELECT id FROM tenancy.tenants WHERE slug = 'acme'), false); INSERT INTO tenant_acme.notes (body) SELECT 'n' || g FROM generate_series(1, 25) g"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args      []string
		code      int
		out, info string
	}{
		{[]string{"move", "acme"}, 2, "", "move needs -to"},
		{[]string{"move", "acme", "-to", "nowhere"}, 1, "", "unknown placement"},
		{[]string{"move", "acme", "-to", "big", "-dir", dir}, 0, "moved acme from default to big: 1 tables, 25 rows", "move: copy"},
		{[]string{"move", "acme", "-to", "big"}, 0, "acme is in big already", ""},
		{[]string{"move", "acme", "-to", "shared"}, 0, "moved acme from big to shared: 1 tables, 25 rows", "move: verify"},
		{[]string{"list"}, 0, "shared", ""},
		{[]string{"audit"}, 0, "audit: no findings", ""},
	} {
		out, errOut, code := ctl(c.args...)
		if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.info) {
			t.Errorf("tenancyctl %v: exit %d, stdout %q, stderr %q; want exit %d, %q, %q", c.args, code, out, errOut, c.code, c.out, c.info)
		}
	}
}

func pgxExec(ctx context.Context, url, sql string) (pgconn.CommandTag, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer conn.Close(ctx)
	return conn.Exec(ctx, sql)
}
