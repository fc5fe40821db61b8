package migrate

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/tenancykit/tenancy/internal/sqllex"
)

// upFile is what the fleet runner needs of one goose SQL migration: its Up
// statements, split as goose splits them, and whether the runner may apply
// it inside its own transaction.
type upFile struct {
	stmts []string
	// fast is false when goose must run the file itself: NO TRANSACTION,
	// ENVSUB (expanded from the environment at run time), or a statement
	// that holds several SQL statements (an extended-protocol query holds
	// one; goose sends such text with the simple protocol).
	fast bool
	why  string // why not fast, for the debug log
	// split, set when the only reason the file is not fast is a statement
	// of several SQL statements, holds each statement's SQL statements
	// (sqllex.Statements): on Citus, which forwards each DDL statement's
	// text to the workers and fails on a string of several, the runner
	// sends them one per query string rather than hand the file to goose.
	split [][]string
}

// parseUp reads a goose SQL migration's Up section by goose's rules
// (pressly/goose v3 internal/sqlparser): annotations are lines starting
// "-- +goose " (Up, Down, StatementBegin, StatementEnd, NO TRANSACTION,
// ENVSUB ON/OFF, any case); outside a StatementBegin/End block a statement
// ends at a line whose last word before a "--" comment ends with ";";
// blank lines and comment lines before a statement are dropped; statements
// are trimmed. Anything this parser does not follow exactly makes the file
// not fast, so goose applies it: a parse error here is never reported, goose
// reports its own. TestParseUpMatchesGoose compares the statements with the
// ones goose executes.
func parseUp(r io.Reader) upFile {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 4<<20)
	const (
		start = iota
		up
		upBlock
		down
		downBlock
	)
	state := start
	out := upFile{fast: true}
	notFast := func(why string) upFile { return upFile{why: why} }
	var buf strings.Builder
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if state == start && trimmed == "" {
			continue
		}
		if strings.HasPrefix(trimmed, "--") && strings.Contains(line, "+goose") {
			cmd, ok := annotation(line)
			if !ok {
				return notFast("annotation " + trimmed)
			}
			switch cmd {
			case "up":
				if state != start {
					return notFast("second Up annotation")
				}
				state = up
				continue
			case "down":
				if state != up || strings.TrimSpace(buf.String()) != "" {
					return notFast("Down annotation out of place")
				}
				state = down
				continue
			case "statementbegin":
				switch state {
				case up:
					state = upBlock
				case down:
					state = downBlock
				default:
					return notFast("StatementBegin out of place")
				}
				continue
			case "statementend":
				if state == downBlock {
					state = down
					continue
				}
				if state != upBlock {
					return notFast("StatementEnd out of place")
				}
				out.stmts = append(out.stmts, strings.TrimSpace(buf.String()))
				buf.Reset()
				state = up
				continue
			case "no transaction":
				return notFast("NO TRANSACTION")
			case "envsub on", "envsub off":
				return notFast("ENVSUB")
			}
		}
		if state == down || state == downBlock {
			continue // goose's Down section: the runner applies Up only
		}
		if buf.Len() == 0 && (strings.HasPrefix(trimmed, "--") || line == "") {
			continue
		}
		if state == start {
			return notFast("SQL before the Up annotation")
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
		if state == up && endsWithSemicolon(line) {
			out.stmts = append(out.stmts, strings.TrimSpace(buf.String()))
			buf.Reset()
		}
	}
	if sc.Err() != nil {
		return notFast(sc.Err().Error())
	}
	if state == start || state == upBlock || state == downBlock || strings.TrimSpace(buf.String()) != "" {
		return notFast("unfinished file")
	}
	multi := ""
	for i, s := range out.stmts {
		sts := sqllex.Split(s)
		for _, st := range sts {
			// COMMIT or ROLLBACK would end the runner's transaction midway,
			// and BEGIN would be refused in it: goose runs such a file as
			// it would.
			if sqllex.TxControl(st) {
				return notFast(fmt.Sprintf("statement %d is transaction control", i+1))
			}
		}
		if len(sts) != 1 && multi == "" {
			multi = fmt.Sprintf("statement %d holds %d SQL statements", i+1, len(sts))
		}
	}
	if multi != "" {
		split := make([][]string, len(out.stmts))
		for i, s := range out.stmts {
			if split[i] = sqllex.Statements(s); len(split[i]) == 0 {
				return notFast(multi)
			}
		}
		return upFile{stmts: out.stmts, why: multi, split: split}
	}
	return out
}

// readUp parses the file at path of fsys with parseUp.
func readUp(fsys fs.FS, path string) (upFile, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return upFile{}, err
	}
	defer f.Close()
	return parseUp(f), nil
}

// annotation returns the lowercased command of a "-- +goose <command>"
// line, and false for anything goose would refuse or read differently.
func annotation(line string) (string, bool) {
	if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
		return "", false
	}
	cmd := strings.ReplaceAll(line, "--", "")
	cmd = strings.Replace(cmd, "+goose", "", 1)
	if strings.Contains(cmd, "+goose") {
		return "", false
	}
	cmd = strings.ToLower(strings.TrimSpace(cmd))
	switch cmd {
	case "up", "down", "statementbegin", "statementend", "no transaction", "envsub on", "envsub off":
		return cmd, true
	}
	return "", false
}

// endsWithSemicolon reports whether the last word of line before a "--"
// comment ends with a semicolon (goose's rule for the end of a statement).
func endsWithSemicolon(line string) bool {
	prev := ""
	for word := range strings.FieldsSeq(line) {
		if strings.HasPrefix(word, "--") {
			break
		}
		prev = word
	}
	return strings.HasSuffix(prev, ";")
}
