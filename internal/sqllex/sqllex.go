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
	var stmts [][]Token
	var cur []Token
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
			cur = append(cur, Token{Text: strings.ToLower(sql[i:j]), Word: true})
			i = j
		case ch == ';':
			if len(cur) > 0 {
				stmts = append(stmts, cur)
				cur = nil
			}
			i++
		default:
			cur = append(cur, Token{Text: sql[i : i+1]})
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
