// Package sqllex splits SQL text into statements of tokens, enough to tell
// what kind of statement each is: pgtenant classifies statements that would
// leave state on a session, provision refuses transaction control in DDL.
package sqllex

import "strings"

// Token is one lexical token: a word (keyword or identifier, lowercased
// unless quoted), a string constant, or a single punctuation character.
type Token struct {
	// Text is the word, lowercased unless quoted; a string constant's
	// value; or the character.
	Text string
	// Word is set for keywords and identifiers.
	Word bool
	// Quoted is set for a double-quoted identifier, U&"..." included (its
	// escapes decoded, UESCAPE honoured).
	Quoted bool
	// Str is set for a string constant: '...', E'...', U&'...', and
	// dollar-quoted.
	Str bool
	// Opaque is set for a string constant or identifier whose value the
	// lexer did not decode (an E'...' string with a backslash escape, a
	// Unicode escape it cannot read): Text is then not its value.
	Opaque bool
}

// Is reports whether t is the unquoted keyword or identifier word
// (lowercase).
func (t Token) Is(word string) bool { return t.Word && !t.Quoted && t.Text == word }

// Punct reports whether t is the punctuation character c.
func (t Token) Punct(c byte) bool { return !t.Word && !t.Str && len(t.Text) == 1 && t.Text[0] == c }

// Name reports whether t is an identifier that names name, quoted or not
// (name is lowercase): "pg_settings", pg_settings and U&"pg\005fsettings"
// all name pg_settings.
func (t Token) Name(name string) bool { return t.Word && !t.Opaque && t.Text == name }

// Split splits sql into statements of tokens. Comments produce no tokens;
// a positional parameter is a token of its own ("$1", neither Word nor Str). standard_conforming_strings is assumed on,
// the default since PostgreSQL 9.1 (pgtenant keeps it on: its backstop
// refuses a statement that turns it off).
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
			var tok Token
			tok, i = lexString(sql, i, false)
			cur = append(cur, tok)
		case (ch == 'e' || ch == 'E') && i+1 < n && sql[i+1] == '\'':
			var tok Token
			tok, i = lexString(sql, i+1, true)
			cur = append(cur, tok)
		case (ch == 'u' || ch == 'U') && i+2 < n && sql[i+1] == '&' && (sql[i+2] == '"' || sql[i+2] == '\''):
			var tok Token
			tok, i = lexUnicode(sql, i+2)
			cur = append(cur, tok)
		case ch == '"':
			var body string
			body, i = quoted(sql, i, '"')
			cur = append(cur, Token{Text: body, Word: true, Quoted: true})
		case ch == '$':
			j := i + 1
			for j < n && isIdentChar(sql[j]) {
				j++
			}
			if j < n && sql[j] == '$' && (j == i+1 || !isDigit(sql[i+1])) {
				tag := sql[i : j+1]
				end := strings.Index(sql[j+1:], tag)
				if end < 0 {
					cur = append(cur, Token{Text: sql[j+1:], Str: true})
					i = n
				} else {
					cur = append(cur, Token{Text: sql[j+1 : j+1+end], Str: true})
					i = j + 1 + end + len(tag)
				}
			} else {
				// A positional parameter: a token of its own, so that
				// "$1.f" is seen as f applied to $1.
				cur = append(cur, Token{Text: sql[i:j]})
				i = j
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

// lexString returns the string constant whose opening quote is at i, and
// the index after it; with backslash set, a backslash escapes the next byte
// (E'...'), and a value with escapes is left undecoded (Opaque).
func lexString(sql string, i int, backslash bool) (Token, int) {
	var b strings.Builder
	opaque := false
	i++
	for i < len(sql) {
		switch sql[i] {
		case '\\':
			if backslash {
				opaque = true
				i += 2
				continue
			}
		case '\'':
			if i+1 < len(sql) && sql[i+1] == '\'' {
				b.WriteByte('\'')
				i += 2
				continue
			}
			return Token{Text: b.String(), Str: true, Opaque: opaque}, i + 1
		}
		b.WriteByte(sql[i])
		i++
	}
	return Token{Text: b.String(), Str: true, Opaque: opaque}, min(i, len(sql))
}

// quoted returns the body of the constant or identifier quoted by q whose
// opening quote is at i (a doubled quote stands for one), and the index
// after its closing quote.
func quoted(sql string, i int, q byte) (string, int) {
	var b strings.Builder
	j := i + 1
	for j < len(sql) {
		if sql[j] == q {
			if j+1 < len(sql) && sql[j+1] == q {
				b.WriteByte(q)
				j += 2
				continue
			}
			break
		}
		b.WriteByte(sql[j])
		j++
	}
	return b.String(), min(j+1, len(sql))
}

// lexUnicode lexes U&"..." (an identifier) or U&'...' (a string) whose
// opening quote is at i, with the UESCAPE clause that may follow, and
// returns the token with its escapes decoded and the index after it. A
// body the lexer cannot decode is Opaque.
func lexUnicode(sql string, i int) (Token, int) {
	q := sql[i]
	body, j := quoted(sql, i, q)
	esc := byte('\\')
	if k := skipSpace(sql, j); k+7 <= len(sql) && strings.EqualFold(sql[k:k+7], "uescape") && (k+7 == len(sql) || !isIdentChar(sql[k+7])) {
		if m := skipSpace(sql, k+7); m < len(sql) && sql[m] == '\'' {
			e, end := quoted(sql, m, '\'')
			if len(e) == 1 {
				esc, j = e[0], end
			} else {
				return Token{Text: body, Word: q == '"', Quoted: q == '"', Str: q == '\'', Opaque: true}, end
			}
		}
	}
	text, ok := decodeUnicode(body, esc)
	return Token{Text: text, Word: q == '"', Quoted: q == '"', Str: q == '\'', Opaque: !ok}, j
}

// decodeUnicode decodes the escapes of a U& body: esc followed by four hex
// digits, esc + and six hex digits, or esc doubled for esc itself.
func decodeUnicode(body string, esc byte) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		if body[i] != esc {
			b.WriteByte(body[i])
			continue
		}
		switch {
		case i+1 < len(body) && body[i+1] == esc:
			b.WriteByte(esc)
			i++
		case i+7 < len(body)+0 && body[i+1] == '+':
			r, ok := hexRune(body[i+2 : i+8])
			if !ok {
				return body, false
			}
			b.WriteRune(r)
			i += 7
		case i+4 < len(body):
			r, ok := hexRune(body[i+1 : i+5])
			if !ok {
				return body, false
			}
			b.WriteRune(r)
			i += 4
		default:
			return body, false
		}
	}
	return b.String(), true
}

func hexRune(h string) (rune, bool) {
	var r rune
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, r > 0 && r <= 0x10ffff
}

// skipSpace returns the index of the first byte at or after i that is
// neither white space nor inside a comment.
func skipSpace(sql string, i int) int {
	for i < len(sql) {
		switch {
		case sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r' || sql[i] == '\f' || sql[i] == '\v':
			i++
		case sql[i] == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*':
			depth := 0
			for i < len(sql) {
				if sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*' {
					depth++
					i += 2
				} else if sql[i] == '*' && i+1 < len(sql) && sql[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		default:
			return i
		}
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
