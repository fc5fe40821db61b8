package provision

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./provision/ -run %s -args -update to create it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func join(stmts []string) string { return strings.Join(stmts, ";\n") + ";\n" }

func TestGoldenSecureSchema(t *testing.T) {
	var stmts []string
	stmts = append(stmts, secureTableSQL("tenant_acme", "projects", "text", "app.tenant_id", "acme-1")...)
	stmts = append(stmts, secureTableSQL("tenant_acme", "tags", "uuid", "app.tenant_id", "0b7f1c8e-8d5e-4c62-9a8e-2f2f0f6e4a11")...)
	stmts = append(stmts, secureTableSQL("tenant_acme", "Mixed Case", "bigint", "myapp.tenant", "42")...)
	stmts = append(stmts, secureTableSQL("public", "shared_notes", "text", "app.tenant_id", "")...)
	stmts = append(stmts, grantSQL("tenant_acme", []string{"projects", "tags", "Mixed Case"}, "app_role")...)
	golden(t, "secure_schema.golden.sql", join(stmts))
}

func TestGoldenGrantsWithoutTables(t *testing.T) {
	golden(t, "grants_empty_schema.golden.sql", join(grantSQL("tenant_empty", nil, "app")))
}
