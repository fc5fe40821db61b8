package migrate

import "strings"

// ParseUp exposes parseUp to the external tests.
func ParseUp(src string) (stmts []string, fast bool, why string) {
	f := parseUp(strings.NewReader(src))
	return f.stmts, f.fast, f.why
}
