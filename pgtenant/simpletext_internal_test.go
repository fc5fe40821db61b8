package pgtenant

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/tenancykit/tenancy/internal/testenv"
)

// pgxOracle is a real connection whose simple-protocol queries are caught
// on the way out: the text pgx would send is kept, and the server is sent
// "SELECT 1" in its place, so that a fuzzed SQL text never runs.
type pgxOracle struct {
	conn *pgx.Conn
	mu   sync.Mutex
	sent []string
}

type catchWriter struct {
	w io.Writer
	o *pgxOracle
}

func (cw catchWriter) Write(b []byte) (int, error) {
	if len(b) >= 5 && b[0] == 'Q' && int(binary.BigEndian.Uint32(b[1:5]))+1 == len(b) {
		cw.o.mu.Lock()
		cw.o.sent = append(cw.o.sent, string(b[5:len(b)-1]))
		cw.o.mu.Unlock()
		q := (&pgproto3.Query{String: "SELECT 1"})
		out, err := q.Encode(nil)
		if err != nil {
			return 0, err
		}
		if _, err := cw.w.Write(out); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return cw.w.Write(b)
}

func newPgxOracle(t testing.TB) *pgxOracle {
	t.Helper()
	pg := testenv.PostgreSQL(t)
	cfg, err := pgx.ParseConfig(pg.AppURL)
	if err != nil {
		t.Fatal(err)
	}
	o := &pgxOracle{}
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(r, catchWriter{w: w, o: o})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if o.conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.conn.Close(context.Background()) })
	return o
}

// pgxText returns the query text pgx sends for sql and args on the simple
// protocol, or its error.
func (o *pgxOracle) pgxText(sql string, args []any) (string, error) {
	o.mu.Lock()
	o.sent = o.sent[:0]
	o.mu.Unlock()
	_, err := o.conn.Exec(context.Background(), sql, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.sent) == 0 {
		if err == nil {
			err = errors.New("pgx sent nothing")
		}
		return "", err
	}
	return o.sent[0], nil
}

// ourText is what the simple encoder writes for sql and args.
func (o *pgxOracle) ourText(sql string, args []any) (string, error) {
	if err := simpleReady(o.conn.PgConn().ParameterStatus); err != nil {
		return "", err
	}
	vals, _, err := encodeSimple(o.conn.TypeMap(), args, nil, nil)
	if err != nil {
		return "", err
	}
	w := &wire{toText: true}
	if len(args) == 0 {
		vals = nil
	}
	w.textStmt(sql, vals)
	return string(w.text), w.err
}

// simpleArgs builds arguments of pgx's usual kinds from fuzz input.
func simpleArgs(s string, n int64, kinds uint16) []any {
	count := int(kinds % 4)
	args := make([]any, 0, count)
	for i := range count {
		switch (kinds >> (2 + 3*i)) & 7 {
		case 0:
			args = append(args, s)
		case 1:
			args = append(args, n)
		case 2:
			args = append(args, nil)
		case 3:
			args = append(args, []byte(s))
		case 4:
			args = append(args, float64(n)/7)
		case 5:
			args = append(args, n%2 == 0)
		case 6:
			args = append(args, time.Unix(n%(1<<40), 0).UTC())
		default:
			args = append(args, []string{s, "x'y"})
		}
	}
	return args
}

// FuzzSimpleText: for any SQL text and arguments, the simple encoder's query
// text is byte for byte what pgx itself sends on the simple protocol
// (pgx is the oracle, on a real connection), and where pgx refuses (an
// argument missing or unused, $0) ours refuses too. SQL that is not valid
// UTF-8 is always refused by ours (pgx drops what follows the bad byte).
func FuzzSimpleText(f *testing.F) {
	for _, seed := range []string{
		"SELECT $1", "SELECT $1, $2, $3", "SELECT '$1', $1", `SELECT "$1", $1`, "SELECT $$ $1 $$, $1",
		"SELECT $tag$ $1 $tag$, $1", "SELECT $tag$ $1 $ta$ $1", "SELECT E'\\' $1', $1", "SELECT e'it''s $1', $1",
		"SELECT 1 -- $1\n, $1", "SELECT 1 /* $1 /* $2 */ $3 */, $1", "SELECT -$1", "SELECT $1$2", "SELECT $0",
		"SELECT $99999999999999999999", "SELECT $1 -- end", "SELECT 'unterminated $1", "SELECT U&'\\0041' || $1",
		"SELECT $é$ $1 $é$, $1", "SELECT $_1$ $1 $_1$, $1", "SELECT $1a", "SELECT type'x\\', $1", "",
		"SELECT /* unterminated $1", "SELECT $a", "SELECT $", "SELECT '\uFFFD' || $1", "SELECT 'a\xffb', $1",
	} {
		f.Add(seed, "it's", int64(-42), uint16(1))
		f.Add(seed, "", int64(7), uint16(2|(2<<2)|(1<<5)))
	}
	f.Add("SELECT $1, $2, $3", "\\x00'--", int64(1<<40), uint16(3|(3<<2)|(4<<5)|(6<<8)))
	f.Add("SELECT $1, $2", "a", int64(2), uint16(2|(5<<2)|(7<<5)))
	o := newPgxOracle(f)
	f.Fuzz(func(t *testing.T, sql, s string, n int64, kinds uint16) {
		args := simpleArgs(s, n, kinds)
		got, gotErr := o.ourText(sql, args)
		if !utf8.ValidString(sql) {
			if gotErr == nil {
				t.Fatalf("SQL that is not UTF-8 was written: %q", got)
			}
			return
		}
		want, wantErr := o.pgxText(sql, args)
		if (gotErr != nil) != (wantErr != nil) {
			t.Fatalf("sql %q args %#v: ours %q, %v; pgx %q, %v", sql, args, got, gotErr, want, wantErr)
		}
		if wantErr == nil {
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("sql %q args %#v (-pgx +ours):\n%s", sql, args, d)
			}
		}
	})
}

// TestSimpleTextRuns: the text the simple encoder writes runs on the server
// with the values it was given, whatever quotes, backslashes and comment
// markers they hold.
func TestSimpleTextRuns(t *testing.T) {
	o := newPgxOracle(t)
	pg := testenv.PostgreSQL(t)
	conn, err := pgconn.Connect(context.Background(), pg.AppURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	hostile := []string{"it's", `\'; SELECT 1; --`, "$1", "$$", "*/ /*", "-- x\n", "\u00e9\u4e2d", ""}
	for _, v := range hostile {
		text, err := o.ourText("SELECT $1::text, -$2::int, $3::text IS NULL", []any{v, int64(-5), nil})
		if err != nil {
			t.Fatal(err)
		}
		res, err := conn.Exec(context.Background(), text).ReadAll()
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		got := []string{string(res[0].Rows[0][0]), string(res[0].Rows[0][1]), string(res[0].Rows[0][2])}
		if d := cmp.Diff([]string{v, "5", "t"}, got); d != "" {
			t.Errorf("%q (-want +got):\n%s", text, d)
		}
	}
	if _, err := o.ourText("SELECT $1", []any{"a", "b"}); err == nil || !strings.Contains(err.Error(), "argument 2 is not used") {
		t.Errorf("an unused argument: %v", err)
	}
}
