// Package rolecheck is the one definition, shared by pgtenant.New and
// provision's Audit, of what makes an app role unsafe for a tenants' pool
// beyond SUPERUSER and BYPASSRLS: the attributes that reach other roles or
// the whole cluster, and the role and database settings (pg_db_role_setting)
// that every new connection of the role inherits.
package rolecheck

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Attributes are the role attributes, besides SUPERUSER and BYPASSRLS, that
// take the app role beyond its tenants' rows, each with why:
//   - CREATEROLE: it can grant itself membership of any non-superuser role
//     (the owner), SET ROLE to it and turn row level security off;
//   - CREATEDB: it can create databases the tenants' policies never reach;
//   - REPLICATION: it can stream every table's rows, policies or not.
var Attributes = []struct{ Name, Why string }{
	{"CREATEROLE", "it can grant itself the owner role, take it with SET ROLE and turn row level security off"},
	{"CREATEDB", "it can create databases outside every tenant's policies"},
	{"REPLICATION", "it can stream every table's rows past row level security"},
}

// AttributesSQL selects, for the role named by roleExpr (an SQL expression:
// session_user, or a parameter), its CREATEROLE, CREATEDB and REPLICATION
// attributes, in the order of Attributes.
func AttributesSQL(roleExpr string) string {
	return "SELECT r.rolcreaterole, r.rolcreatedb, r.rolreplication FROM pg_catalog.pg_roles r WHERE r.rolname = " + roleExpr
}

// SettingsSQL selects the settings that new connections of the role named
// by roleExpr inherit in the current database, one row per setting: where it
// was set (Scope), its name (lower case) and its value. The role's own
// settings, in this database or all, and the database's settings for every
// role are all read: each is a default of the pool's new connections.
func SettingsSQL(roleExpr string) string {
	return `SELECT CASE WHEN s.setrole = 0 THEN 'database' WHEN s.setdatabase = 0 THEN 'role' ELSE 'role in database' END,
			pg_catalog.lower(pg_catalog.split_part(c.cfg, '=', 1)), pg_catalog.substr(c.cfg, pg_catalog.strpos(c.cfg, '=') + 1)
		FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS c(cfg)
		WHERE s.setrole IN (0, (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = ` + roleExpr + `))
		AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
		AND NOT (s.setrole = 0 AND s.setdatabase = 0)
		ORDER BY 1, 2`
}

// TimeoutFloor is the lowest statement_timeout, lock_timeout or
// idle_in_transaction_session_timeout a role or database setting may give
// the pool's connections: below it, a setting planted by one tenant would
// make every tenant's statements fail. Zero (no timeout) is allowed.
const TimeoutFloor = time.Second

// Setting is one role or database setting found by SettingsSQL.
type Setting struct {
	// Scope is "role", "role in database" or "database".
	Scope string
	// Name is the setting's name in lower case; Value its value as set.
	Name, Value string
}

// String renders the setting as ALTER ROLE / ALTER DATABASE would show it.
func (s Setting) String() string {
	return fmt.Sprintf("%s = %s (%s setting)", s.Name, s.Value, s.Scope)
}

// Unsafe reports why a pool whose tenant setting is rlsSetting cannot rely
// on its connections when they start with s, or "" when s is harmless.
func Unsafe(s Setting, rlsSetting string) string {
	switch s.Name {
	case strings.ToLower(rlsSetting):
		return "it is the tenant setting: a connection would start in a tenant's scope"
	case "search_path":
		return "Unscoped statements and functions that do not pin their search_path would resolve names in it"
	case "role", "session_authorization":
		return "connections would start as another role"
	case "default_transaction_read_only", "transaction_read_only":
		if on(s.Value) {
			return "every tenant's writes would fail"
		}
	case "standard_conforming_strings":
		if !on(s.Value) {
			return "the statement classifier reads string constants as PostgreSQL does only when it is on"
		}
	case "row_security":
		if !on(s.Value) {
			return "statements that row level security would filter would fail instead"
		}
	case "client_encoding":
		if !strings.EqualFold(strings.ReplaceAll(s.Value, "-", ""), "utf8") && !strings.EqualFold(s.Value, "unicode") {
			return "pgx and the statement classifier read UTF8"
		}
	case "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout":
		d, ok := duration(s.Value)
		if !ok {
			return "its value cannot be read as a duration"
		}
		if d > 0 && d < TimeoutFloor {
			return fmt.Sprintf("it is below %v: every tenant's statements would be cancelled", TimeoutFloor)
		}
	}
	return ""
}

func on(v string) bool {
	switch strings.ToLower(strings.Trim(strings.TrimSpace(v), `'"`)) {
	case "on", "true", "yes", "1", "t", "y":
		return true
	}
	return false
}

// duration reads a time setting as PostgreSQL does: a number, in
// milliseconds unless a unit follows.
func duration(v string) (time.Duration, bool) {
	v = strings.ToLower(strings.Trim(strings.TrimSpace(v), `'"`))
	i := 0
	for i < len(v) && (v[i] >= '0' && v[i] <= '9' || v[i] == '.' || v[i] == '-' || v[i] == '+') {
		i++
	}
	n, err := strconv.ParseFloat(v[:i], 64)
	if err != nil {
		return 0, false
	}
	unit := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := unit[strings.TrimSpace(v[i:])]
	if !ok {
		return 0, false
	}
	return time.Duration(n * float64(u)), true
}
