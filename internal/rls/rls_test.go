package rls_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/internal/rls"
	"github.com/tenancykit/tenancy/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestExecEach: each statement is a query of its own (a joined string is
// refused, as Citus needs), all of them one transaction: a failing
// statement leaves nothing of the ones before it.
func TestExecEach(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := pgx.Identifier{"execeach_" + strings.ToLower(testenv.UniqueID("t"))}.Sanitize()
	err = rls.ExecEach(ctx, conn.PgConn(), []string{"CREATE TABLE " + name + " (v int)", "SELECT 1/0"})
	if err == nil || !strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("ExecEach: %v, want the division by zero", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil || exists {
		t.Errorf("the table of a failed ExecEach exists: %v, %v", exists, err)
	}
	if err := rls.ExecEach(ctx, conn.PgConn(), []string{"SELECT 1; SELECT 2"}); err == nil || !strings.Contains(err.Error(), "multiple commands") {
		t.Errorf("a joined string: %v, want it refused (one statement per query)", err)
	}
	if err := rls.ExecEach(ctx, conn.PgConn(), []string{"CREATE TABLE " + name + " (v int)", "DROP TABLE " + name}); err != nil {
		t.Errorf("ExecEach: %v", err)
	}
	if err := rls.ExecEach(ctx, conn.PgConn(), nil); err != nil {
		t.Errorf("no statements: %v", err)
	}
}
