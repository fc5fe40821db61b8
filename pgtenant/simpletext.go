package pgtenant

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The simple protocol carries no parameters: a statement's arguments are
// written into its text. pgx does this with a sanitizer of its own that it
// does not export, so the simple encoder (encode.go) writes the text
// itself, the same way: each argument is encoded as pgx encodes it for the
// simple protocol (its text format, with no type), a NULL as null and any
// other value as a string constant with its quotes doubled, each set off by
// a space on either side (so that "-$1" with a negative argument cannot
// become a comment). Placeholders are found by a lexer that skips string
// constants (standard, E'...' and dollar-quoted), quoted identifiers and
// comments as pgx's does; FuzzSimpleText checks the text against what pgx
// itself sends for the same SQL and arguments. Unlike pgx, a SQL text that
// is not valid UTF-8 is refused (pgx's lexer stops there and drops the
// rest), and standard_conforming_strings and client_encoding are checked
// as pgx checks them.

// encodeSimple encodes args for the simple protocol as pgx does: the text
// format, nil for NULL.
func encodeSimple(m *pgtype.Map, args []any, vals [][]byte, buf []byte) ([][]byte, []byte, error) {
	vals = vals[:0]
	if buf == nil {
		// Never nil: Encode returns nil for NULL only, and an empty value
		// appended to a nil buffer would read as one.
		buf = make([]byte, 0, 64)
	}
	for i, a := range args {
		start := len(buf)
		out, err := m.Encode(0, pgx.TextFormatCode, a, buf)
		if err != nil {
			return vals, buf, fmt.Errorf("pgtenant: encode argument %d for the simple protocol: %w", i+1, err)
		}
		if out == nil {
			vals = append(vals, nil)
			continue
		}
		buf = out
		vals = append(vals, buf[start:len(buf):len(buf)])
	}
	return vals, buf, nil
}

// errSimpleUTF8 refuses SQL that is not valid UTF-8 on the simple protocol.
var errSimpleUTF8 = errors.New("pgtenant: the simple protocol needs SQL text in valid UTF-8")

// appendSimple appends sql to dst with each placeholder $n replaced by the
// quoted values[n-1] (nil: null). Every value must be used, as in pgx.
func appendSimple(dst []byte, sql string, values [][]byte) ([]byte, error) {
	if !utf8.ValidString(sql) {
		return dst, errSimpleUTF8
	}
	var used uint64 // bit i: values[i] was used (the first 64)
	var usedMore []bool
	if len(values) > 64 {
		usedMore = make([]bool, len(values))
	}
	i, start := 0, 0
	for i < len(sql) {
		switch c := sql[i]; {
		case (c == 'e' || c == 'E') && i+1 < len(sql) && sql[i+1] == '\'':
			i = skipQuoted(sql, i+2, '\'', true)
		case c == '\'' || c == '"':
			i = skipQuoted(sql, i+1, c, false)
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			i = skipLine(sql, i+2)
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			i = skipBlock(sql, i+2)
		case c == '$' && i+1 < len(sql) && '0' <= sql[i+1] && sql[i+1] <= '9':
			n, end := placeholder(sql, i+1)
			dst = append(dst, sql[start:i]...)
			switch {
			case n < 1:
				return dst, errors.New("pgtenant: simple protocol: placeholder $0: the first argument is $1")
			case n > len(values):
				return dst, fmt.Errorf("pgtenant: simple protocol: placeholder $%d but only %d arguments", n, len(values))
			}
			dst = append(dst, ' ')
			dst = quoteSimple(dst, values[n-1])
			dst = append(dst, ' ')
			if n <= 64 {
				used |= 1 << (n - 1)
			} else {
				usedMore[n-1] = true
			}
			i, start = end, end
		case c == '$':
			if tag, ok := dollarTag(sql[i+1:]); ok {
				i = skipDollar(sql, i+1+len(tag)+1, tag)
			} else {
				i++
			}
		default:
			i++
		}
	}
	dst = append(dst, sql[start:]...)
	for n := range values {
		if n < 64 && used&(1<<n) == 0 || n >= 64 && !usedMore[n] {
			return dst, fmt.Errorf("pgtenant: simple protocol: argument %d is not used in the SQL", n+1)
		}
	}
	return dst, nil
}

// quoteSimple appends v as pgx's simple protocol writes it: null, or a
// string constant with its quotes doubled.
func quoteSimple(dst, v []byte) []byte {
	if v == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '\'')
	for _, b := range v {
		if b == '\'' {
			dst = append(dst, '\'')
		}
		dst = append(dst, b)
	}
	return append(dst, '\'')
}

// skipQuoted returns the index after the quoted text that starts at i
// (after its opening quote q): a doubled quote stays inside, and so, where
// backslash is set (E'...'), does any character after a backslash.
func skipQuoted(sql string, i int, q byte, backslash bool) int {
	for i < len(sql) {
		switch sql[i] {
		case '\\':
			if backslash {
				i++
				if i < len(sql) {
					_, w := utf8.DecodeRuneInString(sql[i:])
					i += w
				}
				continue
			}
		case q:
			if i+1 < len(sql) && sql[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return i
}

// skipLine returns the index after a -- comment that starts before i.
func skipLine(sql string, i int) int {
	for i < len(sql) {
		c := sql[i]
		i++
		if c == '\n' || c == '\r' {
			break
		}
	}
	return i
}

// skipBlock returns the index after a /* comment, which nests, whose
// opening ends before i.
func skipBlock(sql string, i int) int {
	depth := 0
	for i < len(sql) {
		switch {
		case sql[i] == '/' && i+1 < len(sql) && sql[i+1] == '*':
			depth++
			i += 2
		case sql[i] == '*' && i+1 < len(sql) && sql[i+1] == '/':
			i += 2
			if depth == 0 {
				return i
			}
			depth--
		default:
			i++
		}
	}
	return i
}

// placeholder reads the number of $n starting at i (its first digit); a
// number too big for any argument list reads as MaxInt32.
func placeholder(sql string, i int) (int, int) {
	n := 0
	for ; i < len(sql) && '0' <= sql[i] && sql[i] <= '9'; i++ {
		if n > (math.MaxInt32-9)/10 {
			n = math.MaxInt32
		} else {
			n = n*10 + int(sql[i]-'0')
		}
	}
	return n, i
}

// dollarTag reads the tag of a dollar quote from s, which follows its first
// '$': letters, '_' and non-ASCII characters, then digits too, up to the
// next '$'.
func dollarTag(s string) (string, bool) {
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '$':
			return s[:i], true
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', r >= 0x80 && r != utf8.RuneError:
		case i > 0 && '0' <= r && r <= '9':
		default:
			return "", false
		}
		i += w
	}
	return "", false
}

// skipDollar returns the index after the dollar-quoted body that starts at
// i, closed by $tag$ (or the end of sql).
func skipDollar(sql string, i int, tag string) int {
	for j := i; j < len(sql); j++ {
		if sql[j] == '$' && len(sql)-j >= len(tag)+2 && sql[j+1:j+1+len(tag)] == tag && sql[j+1+len(tag)] == '$' {
			return j + len(tag) + 2
		}
	}
	return len(sql)
}

// simpleReady checks what pgx checks before it writes arguments into SQL
// text: quotes are doubled, never backslashed, so strings must conform, and
// the text is UTF-8.
func simpleReady(params func(string) string) error {
	if params("standard_conforming_strings") != "on" {
		return errors.New("pgtenant: simple protocol queries must be run with standard_conforming_strings=on")
	}
	if params("client_encoding") != "UTF8" {
		return errors.New("pgtenant: simple protocol queries must be run with client_encoding=UTF8")
	}
	return nil
}
