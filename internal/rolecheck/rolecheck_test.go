package rolecheck_test

import (
	"testing"

	"github.com/tenancykit/tenancy/internal/rolecheck"
)

func TestUnsafe(t *testing.T) {
	for _, c := range []struct {
		name, value string
		unsafe      bool
	}{
		{"search_path", "public", true},
		{"app.tenant_id", "x", true},
		{"role", "owner", true},
		{"session_authorization", "owner", true},
		{"default_transaction_read_only", "on", true},
		{"default_transaction_read_only", "off", false},
		{"default_transaction_read_only", "true", true},
		{"standard_conforming_strings", "off", true},
		{"standard_conforming_strings", "on", false},
		{"row_security", "off", true},
		{"row_security", "on", false},
		{"client_encoding", "LATIN1", true},
		{"client_encoding", "UTF8", false},
		{"client_encoding", "utf-8", false},
		{"statement_timeout", "1", true},
		{"statement_timeout", "999ms", true},
		{"statement_timeout", "500us", true},
		{"statement_timeout", "0.5s", true},
		{"statement_timeout", "0", false},
		{"statement_timeout", "1000", false},
		{"statement_timeout", "1s", false},
		{"statement_timeout", "2min", false},
		{"statement_timeout", "bogus", true},
		{"lock_timeout", "10ms", true},
		{"idle_in_transaction_session_timeout", "1h", false},
		{"work_mem", "8MB", false},
		{"timezone", "UTC", false},
	} {
		got := rolecheck.Unsafe(rolecheck.Setting{Scope: "role", Name: c.name, Value: c.value}, "app.tenant_id") != ""
		if got != c.unsafe {
			t.Errorf("%s = %s: unsafe %v, want %v", c.name, c.value, got, c.unsafe)
		}
	}
}
