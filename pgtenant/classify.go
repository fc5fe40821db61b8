package pgtenant

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tenancykit/tenancy/internal/sqllex"
)

// The statement path and transactions share connections between tenants, so
// a statement sent there must not leave anything on its session: it is
// classified once per SQL text (the result is cached per Pool) by a small
// lexer that skips comments, quoted identifiers, string and dollar-quoted
// literals, and refused before any I/O if it would create session state.
// The command tag of every statement is checked as well, as a backstop that
// does not depend on the lexer: a connection that reports a session-state
// command the lexer did not expect is closed instead of reused.

// class is what the lexer found in one SQL text.
type class struct {
	// refused names the construct that would leave session state, with
	// the safe alternative; empty when the text may run.
	refused, instead string
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

// sessionClass is the class of every statement on an Acquired Conn.
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
	case "CREATE TABLE", "CREATE VIEW", "CREATE SEQUENCE", "CREATE FUNCTION":
		return tagCreate, true
	case "ROLLBACK":
		return tagRollback, true
	case "RESET", "LISTEN", "UNLISTEN", "PREPARE", "EXECUTE", "DEALLOCATE", "DEALLOCATE ALL",
		"DISCARD ALL", "DISCARD TEMP", "DISCARD PLANS", "DISCARD SEQUENCES", "LOAD", "DO",
		"BEGIN", "START TRANSACTION", "COMMIT", "PREPARE TRANSACTION", "COMMIT PREPARED",
		"ROLLBACK PREPARED":
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
	m sync.Map // string -> *class
	n atomic.Int64
}

const maxClassCache = 4096

func (cc *classCache) classify(sql string) *class {
	if v, ok := cc.m.Load(sql); ok {
		return v.(*class)
	}
	c := classify(sql)
	if cc.n.Add(1) > maxClassCache {
		cc.m.Clear()
		cc.n.Store(1)
	}
	cc.m.Store(sql, c)
	return c
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
	"dblink_connect":              "dblink with a connection string per call",
	"dblink_connect_u":            "dblink with a connection string per call",
}

// classify finds what in sql would leave state on the session.
func classify(sql string) *class {
	c := &class{}
	sts := sqllex.Split(sql)
	for _, st := range sts {
		if sqllex.TxControl(st) {
			c.txControl = true
			break
		}
	}
	for _, st := range sts {
		if c.refused = c.statement(st); c.refused != "" {
			return c
		}
	}
	return c
}

// statement classifies one statement and returns the construct it refuses.
func (c *class) statement(t []sqllex.Token) string {
	first := t[0].Text
	if !t[0].Word || t[0].Quoted {
		first = ""
	}
	at := func(i int, w string) bool { return i < len(t) && t[i].Is(w) }
	switch first {
	case "set":
		switch {
		case at(1, "local"), at(1, "transaction"), at(1, "constraints"):
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
		temp := false
		i := 1
		for ; i < len(t); i++ {
			switch {
			case t[i].Is("temp"), t[i].Is("temporary"):
				temp = true
			case t[i].Is("or"), t[i].Is("replace"), t[i].Is("global"), t[i].Is("local"), t[i].Is("unlogged"), t[i].Is("recursive"):
			default:
				goto kind
			}
		}
	kind:
		if !temp && i+2 < len(t) && t[i].Word && (t[i].Is("table") || t[i].Is("view") || t[i].Is("sequence") || t[i].Is("function")) {
			// CREATE TABLE [IF NOT EXISTS] pg_temp.name
			j := i + 1
			if at(j, "if") {
				j += 3
			}
			temp = j+1 < len(t) && t[j].Word && t[j].Text == "pg_temp" && t[j+1].Text == "."
		}
		if temp && !onCommitDrop(t) {
			c.instead = "CREATE TEMPORARY TABLE ... ON COMMIT DROP inside a transaction, or " + useAcquire
			return "a temporary object that outlives the transaction"
		}
		c.tags |= tagCreate
	case "select", "with":
		for i := 1; i+1 < len(t); i++ {
			if t[i].Is("into") && (t[i+1].Is("temp") || t[i+1].Is("temporary") ||
				(t[i+1].Is("local") || t[i+1].Is("global")) && at(i+2, "temp") ||
				t[i+1].Text == "pg_temp" && at(i+2, ".")) {
				c.instead = "CREATE TEMPORARY TABLE ... ON COMMIT DROP AS inside a transaction, or " + useAcquire
				return "SELECT ... INTO TEMPORARY"
			}
		}
	}
	for i := 0; i+1 < len(t); i++ {
		if !t[i].Word || t[i+1].Text != "(" {
			continue
		}
		if t[i].Quoted && t[i].Text != strings.ToLower(t[i].Text) {
			continue
		}
		if instead, ok := sessionFuncs[t[i].Text]; ok {
			c.instead = instead
			return t[i].Text + "()"
		}
		if t[i].Text == "set_config" && !localSetConfig(t[i+1:]) {
			c.instead = "set_config(name, value, true) inside a transaction, or " + useAcquire
			return "set_config(..., false)"
		}
	}
	return ""
}

// onCommitDrop reports whether the statement says ON COMMIT DROP.
func onCommitDrop(t []sqllex.Token) bool {
	for i := 0; i+2 < len(t); i++ {
		if t[i].Is("on") && t[i+1].Is("commit") && t[i+2].Is("drop") {
			return true
		}
	}
	return false
}

// localSetConfig reports whether the argument list that t opens (t[0] is
// "(") has a third argument that is the literal true.
func localSetConfig(t []sqllex.Token) bool {
	depth, arg := 0, 0
	var third []sqllex.Token
	for _, tk := range t {
		switch tk.Text {
		case "(", "[":
			if !tk.Word {
				depth++
				if depth == 1 {
					continue
				}
			}
		case ")", "]":
			if !tk.Word {
				depth--
				if depth == 0 {
					return arg == 2 && len(third) == 1 && third[0].Is("true")
				}
			}
		case ",":
			if !tk.Word && depth == 1 {
				arg++
				continue
			}
		}
		if arg == 2 {
			third = append(third, tk)
		}
	}
	return false
}
