// Package sqllex splits SQL text into statements of tokens, enough to tell
// what kind of statement each is: pgtenant classifies statements that would
// leave state on a session, provision refuses transaction control in DDL.
package sqllex

import "strings"

// Token is one lexical token: a word (keyword or identifier, lowercased
// unless quoted), or a single punctuation character.
type Token struct {
	// Text is the word, lowercased unless quoted, or the character.
	Text string
	// Word is set for keywords and identifiers.
	Word bool
	// Quoted is set for a double-quoted identifier.
	Quoted bool
}

// Is reports whether t is the unquoted keyword or identifier word
// (lowercase).
func (t Token) Is(word string) bool { return t.Word && !t.Quoted && t.Text == word }

// Split splits sql into statements of tokens. Comments, string constants,
// dollar-quoted constants and positional parameters produce no tokens.
// standard_conforming_strings is assumed on, the default since PostgreSQL
// 9.1.
func Split(sql string) [][]Token {
	stmts, _ := split(sql, false)
	return stmts
}

// Statements splits sql into the source text of its statements, as psql
// would send them one by one: a semicolon ends a statement only outside
// parentheses (a multi-action CREATE RULE) and outside the BEGIN ... END of
// a CREATE FUNCTION or PROCEDURE's SQL-standard body (BEGIN ATOMIC, with
// its CASE ... END), and never inside a comment or a string, identifier or
// dollar-quoted constant. Each text is trimmed of surrounding space (the
// last keeps its trailing space); text that holds no token (only comments)
// is dropped.
func Statements(sql string) []string {
	_, texts := split(sql, true)
	return texts
}

// split is Split, and with psql set Statements: only then do parentheses and
// function bodies hold semicolons (Split's callers classify statements, and
// must not be led to read two statements as one).
func split(sql string, psql bool) ([][]Token, []string) {
	var stmts [][]Token
	var texts []string
	var cur []Token
	start, parens, blocks := 0, 0, 0
	// body: the statement creates a function or procedure, whose body may
	// be BEGIN ATOMIC ... END with semicolons inside.
	body := func() bool {
		if len(cur) == 0 || !cur[0].Is("create") {
			return false
		}
		for _, t := range cur[1:min(len(cur), 5)] {
			if t.Is("function") || t.Is("procedure") {
				return true
			}
		}
		return false
	}
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
			cur = append(cur, Token{Text: b.String(), Word: true, Quoted: true})
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
			word := strings.ToLower(sql[i:j])
			switch {
			case !psql:
			case word == "atomic" && len(cur) > 0 && cur[len(cur)-1].Is("begin") && body():
				blocks++
			case word == "case" && blocks > 0:
				blocks++
			case word == "end" && blocks > 0:
				blocks--
			}
			cur = append(cur, Token{Text: word, Word: true})
			i = j
		case ch == ';' && parens == 0 && blocks == 0:
			if len(cur) > 0 {
				stmts = append(stmts, cur)
				texts = append(texts, strings.TrimSpace(sql[start:i]))
				cur = nil
			}
			i++
			start = i
		default:
			switch {
			case !psql:
			case ch == '(':
				parens++
			case ch == ')':
				parens = max(parens-1, 0)
			}
			cur = append(cur, Token{Text: sql[i : i+1]})
			i++
		}
	}
	if len(cur) > 0 {
		stmts = append(stmts, cur)
		// Trailing space stays: the text may end inside an unterminated
		// string or identifier, whose content it is.
		texts = append(texts, strings.TrimLeft(sql[start:], " \t\n\r\f\v"))
	}
	return stmts, texts
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

// TxControl reports whether st is a transaction control statement —
// BEGIN, START TRANSACTION, COMMIT, END, ABORT, ROLLBACK, SAVEPOINT,
// RELEASE, PREPARE TRANSACTION — which would end or split a transaction its
// caller runs it in.
func TxControl(st []Token) bool {
	if len(st) == 0 {
		return false
	}
	switch {
	case st[0].Is("begin"), st[0].Is("start"), st[0].Is("commit"), st[0].Is("end"), st[0].Is("abort"),
		st[0].Is("rollback"), st[0].Is("savepoint"), st[0].Is("release"):
		return true
	case st[0].Is("prepare") && len(st) > 1 && st[1].Is("transaction"):
		return true
	}
	return false
}
