package redisconfine

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/tenancykit/tenancy/internal/keyspec"
	"github.com/tenancykit/tenancy/internal/testenv"
)

// sampleArgs builds an argument list for cmd: distinct tokens "a1", "a2", ...
// with numkeys arguments set so keynum specs parse.
func sampleArgs(cmd keyspec.Command, extra int) []string {
	n := cmd.Arity
	if n < 0 {
		n = -n + extra
	}
	args := make([]string, n)
	name := strings.Split(cmd.Name, "|")
	copy(args, name)
	for i := len(name); i < n; i++ {
		args[i] = "a" + strconv.Itoa(i)
	}
	for _, s := range cmd.Specs {
		if s.Begin == keyspec.BeginIndex && s.Find == keyspec.FindKeynum {
			if idx := s.Index + s.KeyNumIdx; idx < n {
				keys := (n - (s.Index + s.FirstKey)) / max(s.KeyStep, 1)
				args[idx] = strconv.Itoa(max(1, min(keys, 2)))
			}
		}
		if s.Begin == keyspec.BeginKeyword && s.StartFrom > 0 && s.StartFrom < n-1 {
			args[s.StartFrom] = s.Keyword
		}
	}
	return args
}

// TestKeyPositionsMatchTheServer asks a real Redis (COMMAND GETKEYS) where
// the keys are in a sample of every command in the table, and checks that the
// rewriter prefixes exactly those arguments.
func TestKeyPositionsMatchTheServer(t *testing.T) {
	raw := testenv.RedisClient(t)
	ctx := context.Background()
	checked := 0
	for _, cmd := range keyspec.All() {
		if cmd.Flags&keyspec.CmdContainer != 0 || len(cmd.Specs) == 0 {
			continue
		}
		for extra := 0; extra < 4; extra++ {
			args := sampleArgs(cmd, extra)
			p, err := For(args, Dedicated, testAlternatives)
			if err != nil {
				continue // refused or unsupported: nothing is sent, nothing to compare
			}
			serverKeys, err := raw.Do(ctx, raw.B().Arbitrary(append([]string{"COMMAND", "GETKEYS"}, args...)...).Build()).AsStrSlice()
			if err != nil {
				continue // the sample is not a valid invocation
			}
			var ours []string
			for i := 0; i < p.Len(); i++ {
				if e := p.At(i); e.Kind == EditKey {
					ours = append(ours, args[e.Pos])
				}
			}
			sort.Strings(ours)
			sort.Strings(serverKeys)
			serverKeys = slices.Compact(serverKeys)
			if !slices.Equal(ours, serverKeys) {
				t.Errorf("%v: we prefix %v, the server says the keys are %v", args, ours, serverKeys)
			}
			checked++
		}
	}
	if checked < 150 {
		t.Errorf("only %d samples compared; the oracle is not exercising the table", checked)
	}
	t.Logf("%d command samples agree with COMMAND GETKEYS", checked)
}

// FuzzRewrite drives commands from the key table with random arguments
// through the rewriter: every key argument gets the prefix exactly once and
// every other argument is left as it was.
func FuzzRewrite(f *testing.F) {
	names := make([]string, 0, len(keyspec.All()))
	for name := range keyspec.All() {
		names = append(names, name)
	}
	sort.Strings(names)
	f.Add(uint16(0), "a b c", uint8(3))
	f.Add(uint16(42), "2 k1 k2 x", uint8(4))
	f.Add(uint16(100), "STREAMS s1 s2 0 0", uint8(5))
	f.Fuzz(func(t *testing.T, which uint16, rest string, n uint8) {
		cmd := keyspec.All()[names[int(which)%len(names)]]
		args := append(strings.Split(cmd.Name, "|"), strings.Fields(rest)...)
		if int(n) < len(args) {
			args = args[:max(int(n), len(strings.Split(cmd.Name, "|")))]
		}
		orig := slices.Clone(args)
		p, err := For(args, Dedicated, testAlternatives)
		if err != nil {
			return
		}
		const prefix = "t:{T}:"
		out := Apply(slices.Clone(args), p, prefix)
		isEdit := map[int]EditKind{}
		for i := 0; i < p.Len(); i++ {
			e := p.At(i)
			if _, dup := isEdit[e.Pos]; dup {
				t.Fatalf("%v: position %d edited twice", orig, e.Pos)
			}
			if e.Pos <= 0 || e.Pos >= len(orig) {
				t.Fatalf("%v: edit of position %d out of range", orig, e.Pos)
			}
			isEdit[e.Pos] = e.Kind
		}
		for i, a := range orig {
			kind, edited := isEdit[i]
			switch {
			case !edited && out[i] != a:
				t.Fatalf("%v: non-key argument %d changed to %q", orig, i, out[i])
			case edited && kind == EditKey && out[i] != prefix+a:
				t.Fatalf("%v: key %d became %q, want %q", orig, i, out[i], prefix+a)
			case edited && kind == EditPattern && out[i] != EscapeGlob(prefix)+a:
				t.Fatalf("%v: pattern %d became %q", orig, i, out[i])
			}
		}
		if !p.MatchAll && len(out) != len(orig) {
			t.Fatalf("%v: argument count changed to %d", orig, len(out))
		}
	})
}

func TestEscapeGlob(t *testing.T) {
	for in, want := range map[string]string{
		"t:{a}:":  "t:{a}:",
		"a*b?[c]": `a\*b\?\[c\]`,
		`x\y^`:    `x\\y\^`,
	} {
		if got := EscapeGlob(in); got != want {
			t.Errorf("EscapeGlob(%q) = %q, want %q", in, got, want)
		}
	}
}

var testAlternatives = &Alternatives{Block: "a pipeline", Watch: "a watch", Subscribe: "a subscription"}
