package sqllex_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tenancykit/tenancy/internal/sqllex"
)

func TestStatements(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want []string
	}{
		{"CREATE TABLE a (id int); CREATE INDEX ON a (id)", []string{"CREATE TABLE a (id int)", "CREATE INDEX ON a (id)"}},
		{"  -- only a comment\n ; ;", nil},
		{"SELECT ';' ; SELECT $x$ ; $x$; SELECT \"a;b\"", []string{"SELECT ';'", "SELECT $x$ ; $x$", "SELECT \"a;b\""}},
		{"/* a; */ SELECT 1 -- b;\n; SELECT 2", []string{"/* a; */ SELECT 1 -- b;", "SELECT 2"}},
		{"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO v VALUES (2)); SELECT 1",
			[]string{"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO v VALUES (2))", "SELECT 1"}},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; SELECT 3",
			[]string{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END", "SELECT 3"}},
		// A function named begin is not a body.
		{"CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'select 1'; SELECT 2", []string{"CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'select 1'", "SELECT 2"}},
	} {
		if diff := cmp.Diff(tc.want, sqllex.Statements(tc.sql)); diff != "" {
			t.Errorf("Statements(%q) (-want +got):\n%s", tc.sql, diff)
		}
	}
}

// TestSplitIgnoresParentheses: Split, which classifies statements for
// pgtenant, splits at every top-level semicolon outside quotes and
// comments, so that no statement can hide behind a function named begin or
// a parenthesis.
func TestSplitIgnoresParentheses(t *testing.T) {
	for sql, want := range map[string]int{
		"CREATE FUNCTION begin() RETURNS int LANGUAGE sql AS 'select 1'; SET ROLE x": 2,
		"SELECT ((1; SET ROLE x": 2,
		"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); SET ROLE x)": 2,
	} {
		if got := len(sqllex.Split(sql)); got != want {
			t.Errorf("Split(%q): %d statements, want %d", sql, got, want)
		}
	}
}

// FuzzStatements: Statements only ever keeps together what Split would cut
// (it never cuts where Split does not), and its texts, put back together
// with semicolons on lines of their own, hold the same tokens as the input.
func FuzzStatements(f *testing.F) {
	for _, s := range []string{
		"CREATE TABLE a (id int); CREATE INDEX ON a (id)",
		"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO v VALUES (2))",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT 2",
		"SELECT 'a;b' -- c;\n; SELECT $q$ ; $q$ /* ; */",
		"SELECT (((1; SET ROLE x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		texts := sqllex.Statements(sql)
		if n, m := len(texts), len(sqllex.Split(sql)); n > m {
			t.Fatalf("Statements made %d statements where Split made %d", n, m)
		}
		var flat, back []sqllex.Token
		for _, st := range sqllex.Split(sql) {
			flat = append(flat, st...)
		}
		for _, st := range sqllex.Split(strings.Join(texts, "\n;\n")) {
			back = append(back, st...)
		}
		if !cmp.Equal(flat, back) {
			t.Fatalf("tokens changed:\n%v\n%v", flat, back)
		}
	})
}
