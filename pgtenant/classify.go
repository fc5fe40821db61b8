package pgtenant

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tenancykit/tenancy/internal/sqllex"
)

// The statement path and transactions share connections between tenants, so
// a statement sent there must not leave anything on its session, nor change
// the scope it runs in. Each SQL text is classified once (the result is
// cached per Pool) by a small lexer that skips comments, reads quoted and
// U&"..." identifiers and every kind of string constant, and sees through
// EXPLAIN: what it knows would leave state is refused before any I/O. What
// it cannot bound — a call of a function it does not know to be harmless,
// DDL, EXPLAIN, anything but plain SELECT/INSERT/UPDATE/DELETE/MERGE — is
// marked check, and the server-side backstop (backstop.go) verifies what
// the session holds after it. The command tag of every statement is checked
// as well: a connection that reports a session-state command the lexer did
// not expect is closed instead of reused.

// class is what the lexer found in one SQL text.
type class struct {
	// refused names the construct that would leave session state or
	// change the scope, with the safe alternative; empty when the text may
	// run.
	refused, instead string
	// beyond marks a refused construct whose effect outlives the session
	// (role and database settings, roles, default privileges): refused on
	// an Acquired Conn too.
	beyond bool
	// ddl marks DDL refused because the pool does not allow it
	// (Config.AllowDDL): refused on an Acquired Conn too, since the objects
	// it makes or changes outlive the session.
	ddl bool
	// check: the lexer cannot bound what the text does, so the backstop
	// verifies the session after it (see backstop.go).
	check bool
	// tags are the session-looking command tags this text may produce
	// without leaving state behind (SET LOCAL, a cursor without HOLD, a
	// table that is not temporary).
	tags tagBits
	// session marks statements of an Acquired Conn: session state is
	// allowed there (its reset on release clears it), so no tag marks the
	// connection.
	session bool
	// txControl: some statement of the text is transaction control
	// (sqllex.TxControl), which a Conn refuses in Citus mode.
	txControl bool
}

// sessionClass is the class of every statement on an Acquired Conn that the
// lexer lets through.
var sessionClass = &class{session: true}

type tagBits uint8

const (
	tagSet tagBits = 1 << iota
	tagDeclare
	tagCreate
	tagRollback // ROLLBACK TO SAVEPOINT
)

// stateTag reports whether a command tag names a command that can change
// session state, and which allowance in class.tags covers it (0: none).
func stateTag(tag string) (tagBits, bool) {
	switch tag {
	case "SET":
		return tagSet, true
	case "DECLARE CURSOR":
		return tagDeclare, true
	case "CREATE TABLE", "CREATE VIEW", "CREATE SEQUENCE", "CREATE FUNCTION", "CREATE PROCEDURE", "CREATE TYPE",
		"CREATE DOMAIN", "CREATE TABLE AS", "SELECT INTO", "CREATE INDEX", "CREATE OPERATOR", "CREATE AGGREGATE":
		return tagCreate, true
	case "ROLLBACK":
		return tagRollback, true
	case "RESET", "LISTEN", "UNLISTEN", "PREPARE", "EXECUTE", "DEALLOCATE", "DEALLOCATE ALL",
		"DISCARD ALL", "DISCARD TEMP", "DISCARD PLANS", "DISCARD SEQUENCES", "LOAD", "DO",
		"BEGIN", "START TRANSACTION", "COMMIT", "PREPARE TRANSACTION", "COMMIT PREPARED",
		"ROLLBACK PREPARED", "ALTER ROLE", "ALTER DATABASE", "ALTER SYSTEM", "CREATE ROLE", "DROP ROLE",
		"GRANT ROLE", "REVOKE ROLE", "ALTER DEFAULT PRIVILEGES", "SECURITY LABEL":
		return 0, true
	}
	return 0, false
}

// leaves reports whether a statement of class c that completed with tag may
// have left state on its session that c did not account for.
func (c *class) leaves(tag string) bool {
	if c.session {
		return false
	}
	if len(tag) == 0 || tag[0] < 'A' || tag[0] == 'I' || tag[0] == 'U' || tag[0] == 'M' || tag[0] == 'F' {
		// INSERT, UPDATE, MERGE, FETCH, and SELECT below: the common tags,
		// answered without a map or switch on the whole string.
		return false
	}
	if strings.HasPrefix(tag, "SELECT ") {
		return false
	}
	bit, ok := stateTag(tag)
	return ok && (bit == 0 || c.tags&bit == 0)
}

// classCache caches the class of each SQL text for one Pool. It is cleared
// when it passes maxClassCache entries, which bounds it whatever the
// application sends.
type classCache struct {
	m    sync.Map // string -> *class
	n    atomic.Int64
	opts classOpts
}

const maxClassCache = 4096

func (cc *classCache) classify(sql string) *class {
	if v, ok := cc.m.Load(sql); ok {
		return v.(*class)
	}
	c := classify(sql, cc.opts)
	if cc.n.Add(1) > maxClassCache {
		cc.m.Clear()
		cc.n.Store(1)
	}
	cc.m.Store(sql, c)
	return c
}

// classOpts is what classification depends on in a Pool's configuration.
type classOpts struct {
	// setting is the pool's RLS setting, which no statement may write.
	setting string
	// allowDDL: Config.AllowDDL.
	allowDDL bool
}

const useAcquire = "a connection from Pool.Acquire (its session is reset on release)"

// sessionFuncs are functions whose effect or answer belongs to the session.
var sessionFuncs = map[string]string{
	"pg_advisory_lock":            "pg_advisory_xact_lock in a transaction, or " + useAcquire,
	"pg_advisory_lock_shared":     "pg_advisory_xact_lock_shared in a transaction, or " + useAcquire,
	"pg_try_advisory_lock":        "pg_try_advisory_xact_lock in a transaction, or " + useAcquire,
	"pg_try_advisory_lock_shared": "pg_try_advisory_xact_lock_shared in a transaction, or " + useAcquire,
	"pg_advisory_unlock":          useAcquire,
	"pg_advisory_unlock_shared":   useAcquire,
	"pg_advisory_unlock_all":      useAcquire,
	"lastval":                     "INSERT ... RETURNING",
	"currval":                     "INSERT ... RETURNING",
	"setseed":                     useAcquire,
	"dblink_connect":              "dblink with a connection string per call",
	"dblink_connect_u":            "dblink with a connection string per call",
}

// protectedSettings are the settings the pool sets for every statement, or
// whose value the lexer and pgx rely on; no statement on a shared
// connection may write them, not even for its own transaction. The pool's
// RLS setting is added per Pool.
var protectedSettings = map[string]bool{
	"search_path": true, "role": true, "session_authorization": true,
	"standard_conforming_strings": true, "client_encoding": true,
}

const scopeInstead = "nothing: the pool sets the tenant's scope for every statement (Pool.Unscoped for work of no tenant)"

// classify finds what in sql would leave state on the session, change the
// statement's scope, or escape the lexer.
func classify(sql string, o classOpts) *class {
	c := &class{}
	sts := sqllex.Split(sql)
	for _, st := range sts {
		if sqllex.TxControl(st) {
			c.txControl = true
			break
		}
	}
	for _, st := range sts {
		if c.refused = c.statement(st, o); c.refused != "" {
			return c
		}
	}
	return c
}

// temp reports whether t[i] names a temporary schema: pg_temp, or its real
// name pg_temp_N (and pg_toast_temp_N), in any spelling.
func tempSchema(t sqllex.Token) bool {
	if !t.Word || t.Opaque {
		return false
	}
	s := t.Text
	if s == "pg_temp" {
		return true
	}
	for _, prefix := range []string{"pg_temp_", "pg_toast_temp_"} {
		if rest, ok := strings.CutPrefix(s, prefix); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			return true
		}
	}
	return false
}

// mentionsTemp reports whether t names an object in a temporary schema
// (a temporary schema followed by ".").
func mentionsTemp(t []sqllex.Token) bool {
	for i := 0; i+1 < len(t); i++ {
		if tempSchema(t[i]) && t[i+1].Punct('.') {
			return true
		}
	}
	return false
}

// stripExplain returns the statement an EXPLAIN runs (or plans), and
// whether there was an EXPLAIN.
func stripExplain(t []sqllex.Token) ([]sqllex.Token, bool) {
	if len(t) == 0 || !t[0].Is("explain") {
		return t, false
	}
	i := 1
	if i < len(t) && t[i].Punct('(') {
		depth := 0
		for ; i < len(t); i++ {
			if t[i].Punct('(') {
				depth++
			} else if t[i].Punct(')') {
				if depth--; depth == 0 {
					i++
					break
				}
			}
		}
	}
	for i < len(t) && (t[i].Is("analyze") || t[i].Is("analyse") || t[i].Is("verbose")) {
		i++
	}
	return t[i:], true
}

// statement classifies one statement and returns the construct it refuses.
func (c *class) statement(t []sqllex.Token, o classOpts) string {
	t, explained := stripExplain(t)
	if explained {
		c.check = true
	}
	if len(t) == 0 {
		return ""
	}
	first := ""
	if t[0].Word && !t[0].Quoted {
		first = t[0].Text
	}
	at := func(i int, w string) bool { return i < len(t) && t[i].Is(w) }
	ddl := func(what string) string {
		if o.allowDDL {
			c.check = true
			c.tags |= tagCreate
			return ""
		}
		c.ddl = true
		c.instead = "DDL as the schema owner (provision, migrate), or Config.AllowDDL"
		return what + " (DDL on a tenant's connection)"
	}
	beyond := func(what string) string {
		c.beyond = true
		c.instead = "the owner or an administrator, outside the tenants' pool"
		return what + " (it outlives the session: every connection of the role or database would inherit it)"
	}
	switch first {
	case "set":
		switch {
		case at(1, "transaction"), at(1, "constraints"):
			c.tags |= tagSet
		case at(1, "local"):
			name := settingName(t[2:])
			if name == "" || protectedSettings[name] || name == o.setting {
				c.instead = scopeInstead
				if name == "" {
					name = "an unrecognised setting"
				}
				return "SET LOCAL " + name
			}
			c.tags |= tagSet
		default:
			c.instead = "SET LOCAL (or set_config(..., true)) in a transaction, or " + useAcquire
			return "SET at session level"
		}
	case "reset":
		c.instead = useAcquire
		return "RESET"
	case "begin", "start", "commit", "end", "abort":
		c.instead = "Pool.Begin and Tx.Commit / Tx.Rollback"
		return strings.ToUpper(first) + " (transaction control in SQL)"
	case "rollback":
		if !at(1, "to") && !(at(2, "to") && (at(1, "work") || at(1, "transaction"))) {
			c.instead = "Tx.Rollback (ROLLBACK TO SAVEPOINT is fine)"
			return "ROLLBACK (transaction control in SQL)"
		}
		c.tags |= tagRollback
	case "savepoint", "release", "fetch", "move", "close", "lock", "table", "values":
	case "declare":
		for i := 1; i < len(t) && !t[i].Is("for"); i++ {
			if t[i].Is("with") && at(i+1, "hold") {
				c.instead = "a cursor without HOLD inside a transaction, or " + useAcquire
				return "DECLARE ... WITH HOLD"
			}
		}
		c.tags |= tagDeclare
	case "listen", "unlisten":
		c.instead = useAcquire
		return strings.ToUpper(first)
	case "prepare", "execute", "deallocate":
		c.instead = "parameters ($1, $2, ...): pgtenant prepares statements itself"
		return strings.ToUpper(first) + " (SQL-level prepared statements)"
	case "discard", "load", "do":
		c.instead = useAcquire
		return strings.ToUpper(first)
	case "create":
		if r := c.create(t, o, ddl, beyond); r != "" {
			return r
		}
	case "alter":
		switch {
		case at(1, "role"), at(1, "user"), at(1, "group"):
			return beyond("ALTER ROLE")
		case at(1, "database"):
			return beyond("ALTER DATABASE")
		case at(1, "system"):
			return beyond("ALTER SYSTEM")
		case at(1, "default") && at(2, "privileges"):
			return beyond("ALTER DEFAULT PRIVILEGES")
		}
		if mentionsTemp(t) {
			c.instead = "CREATE TEMPORARY TABLE ... ON COMMIT DROP inside a transaction, or " + useAcquire
			return "ALTER of a temporary object"
		}
		if r := ddl("ALTER"); r != "" {
			return r
		}
	case "drop":
		switch {
		case at(1, "role"), at(1, "user"), at(1, "group"):
			return beyond("DROP ROLE")
		case at(1, "owned"):
			return beyond("DROP OWNED")
		}
		if r := ddl("DROP"); r != "" {
			return r
		}
	case "reassign":
		return beyond("REASSIGN OWNED")
	case "security":
		return beyond("SECURITY LABEL")
	case "grant", "revoke":
		on := false
		for _, tk := range t[1:] {
			if tk.Is("on") {
				on = true
				break
			}
			if tk.Is("to") || tk.Is("from") {
				break
			}
		}
		if !on {
			return beyond(strings.ToUpper(first) + " of a role")
		}
		if r := ddl(strings.ToUpper(first)); r != "" {
			return r
		}
	case "comment", "import":
		if r := ddl(strings.ToUpper(first)); r != "" {
			return r
		}
	case "select", "with", "insert", "update", "delete", "merge":
		if r := c.dml(t, o, ddl); r != "" {
			return r
		}
	default:
		// CALL, COPY, TRUNCATE, VACUUM, ANALYZE, REFRESH, a word the lexer
		// does not know: allowed, and verified by the backstop.
		c.check = true
	}
	return c.calls(t, o)
}
