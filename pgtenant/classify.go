package pgtenant

import (
	"strings"
	"sync"
	"sync/atomic"
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

// token is one lexical token: a word (keyword or identifier, lowercased
// unless quoted), or a single punctuation character.
type token struct {
	text   string
	word   bool
	quoted bool
}

func (t token) is(word string) bool { return t.word && !t.quoted && t.text == word }

// lex splits sql into statements of tokens. Comments, string constants,
// dollar-quoted constants and positional parameters produce no tokens.
// standard_conforming_strings is assumed on (the default since PostgreSQL
// 9.1; a SET that turns it off is refused on the statement path).
func lex(sql string) [][]token {
	var stmts [][]token
	var cur []token
	i, n := 0, len(sql)
	for i < n {
		ch := sql[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v':
			i++
		case ch == '-' && i+1 < n && sql[i+1] == '-':
			for i < n && sql[i] != '\n' {
				i++
			}
		case ch == '/' && i+1 < n && sql[i+1] == '*':
			depth := 0
			for i < n {
				if sql[i] == '/' && i+1 < n && sql[i+1] == '*' {
					depth++
					i += 2
				} else if sql[i] == '*' && i+1 < n && sql[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case ch == '\'':
			i = skipString(sql, i, false)
		case (ch == 'e' || ch == 'E') && i+1 < n && sql[i+1] == '\'':
			i = skipString(sql, i+1, true)
		case ch == '"':
			j := i + 1
			var b strings.Builder
			for j < n {
				if sql[j] == '"' {
					if j+1 < n && sql[j+1] == '"' {
						b.WriteByte('"')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(sql[j])
				j++
			}
			cur = append(cur, token{text: b.String(), word: true, quoted: true})
			i = j + 1
		case ch == '$':
			j := i + 1
			for j < n && isIdentChar(sql[j]) {
				j++
			}
			if j < n && sql[j] == '$' && (j == i+1 || !isDigit(sql[i+1])) {
				tag := sql[i : j+1]
				end := strings.Index(sql[j+1:], tag)
				if end < 0 {
					i = n
				} else {
					i = j + 1 + end + len(tag)
				}
			} else {
				i = j // a positional parameter
			}
		case isIdentStart(ch):
			j := i + 1
			for j < n && (isIdentChar(sql[j]) || sql[j] == '$') {
				j++
			}
			cur = append(cur, token{text: strings.ToLower(sql[i:j]), word: true})
			i = j
		case ch == ';':
			if len(cur) > 0 {
				stmts = append(stmts, cur)
				cur = nil
			}
			i++
		default:
			cur = append(cur, token{text: sql[i : i+1]})
			i++
		}
	}
	if len(cur) > 0 {
		stmts = append(stmts, cur)
	}
	return stmts
}

// skipString returns the index after the string constant whose opening quote
// is at i; with backslash set, a backslash escapes the next byte (E'...').
func skipString(sql string, i int, backslash bool) int {
	i++
	for i < len(sql) {
		switch sql[i] {
		case '\\':
			if backslash {
				i += 2
				continue
			}
		case '\'':
			if i+1 < len(sql) && sql[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return i
}

func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentChar(c byte) bool { return isIdentStart(c) || isDigit(c) }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

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
	for _, st := range lex(sql) {
		if c.refused = c.statement(st); c.refused != "" {
			return c
		}
	}
	return c
}

// statement classifies one statement and returns the construct it refuses.
func (c *class) statement(t []token) string {
	first := t[0].text
	if !t[0].word || t[0].quoted {
		first = ""
	}
	at := func(i int, w string) bool { return i < len(t) && t[i].is(w) }
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
		for i := 1; i < len(t) && !t[i].is("for"); i++ {
			if t[i].is("with") && at(i+1, "hold") {
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
			case t[i].is("temp"), t[i].is("temporary"):
				temp = true
			case t[i].is("or"), t[i].is("replace"), t[i].is("global"), t[i].is("local"), t[i].is("unlogged"), t[i].is("recursive"):
			default:
				goto kind
			}
		}
	kind:
		if !temp && i+2 < len(t) && t[i].word && (t[i].is("table") || t[i].is("view") || t[i].is("sequence") || t[i].is("function")) {
			// CREATE TABLE [IF NOT EXISTS] pg_temp.name
			j := i + 1
			if at(j, "if") {
				j += 3
			}
			temp = j+1 < len(t) && t[j].word && t[j].text == "pg_temp" && t[j+1].text == "."
		}
		if temp && !onCommitDrop(t) {
			c.instead = "CREATE TEMPORARY TABLE ... ON COMMIT DROP inside a transaction, or " + useAcquire
			return "a temporary object that outlives the transaction"
		}
		c.tags |= tagCreate
	case "select", "with":
		for i := 1; i+1 < len(t); i++ {
			if t[i].is("into") && (t[i+1].is("temp") || t[i+1].is("temporary") ||
				(t[i+1].is("local") || t[i+1].is("global")) && at(i+2, "temp") ||
				t[i+1].text == "pg_temp" && at(i+2, ".")) {
				c.instead = "CREATE TEMPORARY TABLE ... ON COMMIT DROP AS inside a transaction, or " + useAcquire
				return "SELECT ... INTO TEMPORARY"
			}
		}
	}
	for i := 0; i+1 < len(t); i++ {
		if !t[i].word || t[i+1].text != "(" {
			continue
		}
		if t[i].quoted && t[i].text != strings.ToLower(t[i].text) {
			continue
		}
		if instead, ok := sessionFuncs[t[i].text]; ok {
			c.instead = instead
			return t[i].text + "()"
		}
		if t[i].text == "set_config" && !localSetConfig(t[i+1:]) {
			c.instead = "set_config(name, value, true) inside a transaction, or " + useAcquire
			return "set_config(..., false)"
		}
	}
	return ""
}

// onCommitDrop reports whether the statement says ON COMMIT DROP.
func onCommitDrop(t []token) bool {
	for i := 0; i+2 < len(t); i++ {
		if t[i].is("on") && t[i+1].is("commit") && t[i+2].is("drop") {
			return true
		}
	}
	return false
}

// localSetConfig reports whether the argument list that t opens (t[0] is
// "(") has a third argument that is the literal true.
func localSetConfig(t []token) bool {
	depth, arg := 0, 0
	var third []token
	for _, tk := range t {
		switch tk.text {
		case "(", "[":
			if !tk.word {
				depth++
				if depth == 1 {
					continue
				}
			}
		case ")", "]":
			if !tk.word {
				depth--
				if depth == 0 {
					return arg == 2 && len(third) == 1 && third[0].is("true")
				}
			}
		case ",":
			if !tk.word && depth == 1 {
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
