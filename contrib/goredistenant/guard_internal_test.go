package goredistenant

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func encodeRESP(cmds [][]string) []byte {
	var b []byte
	for _, args := range cmds {
		b = append(b, '*')
		b = strconv.AppendInt(b, int64(len(args)), 10)
		b = append(b, "\r\n"...)
		for _, a := range args {
			b = append(b, '$')
			b = strconv.AppendInt(b, int64(len(a)), 10)
			b = append(b, "\r\n"...)
			b = append(b, a...)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

// FuzzGuard writes random commands, RESP-encoded as go-redis writes them,
// in random pieces: the guard refuses exactly the streams holding a
// subscribe command, whatever the pieces, and never misreads a command.
func FuzzGuard(f *testing.F) {
	f.Add("get k\nset k v", uint8(3))
	f.Add("SUBSCRIBE t:{b}:x", uint8(1))
	f.Add("hello 3\nPsubscribe *\nping", uint8(7))
	f.Add("set subscribe ssubscribe", uint8(2))
	f.Add("ssubscribeX a", uint8(200))
	f.Fuzz(func(t *testing.T, program string, piece uint8) {
		var cmds [][]string
		want := false
		for _, line := range strings.Split(program, "\n") {
			args := strings.Split(line, " ")
			if len(args[0]) == 0 {
				continue
			}
			cmds = append(cmds, args)
			switch strings.ToLower(args[0]) {
			case "subscribe", "psubscribe", "ssubscribe":
				want = true
			}
		}
		if len(cmds) == 0 {
			return
		}
		wire := encodeRESP(cmds)
		size := int(piece%16) + 1
		var s respScanner
		var err error
		for i := 0; i < len(wire) && err == nil; i += size {
			err = s.feed(wire[i:min(i+size, len(wire))])
		}
		switch {
		case errors.Is(err, errStream):
			t.Fatalf("%q: the guard misread go-redis's encoding", program)
		case want && err != errRawSubscribe:
			t.Fatalf("%q: a subscribe command passed the guard (err %v)", program, err)
		case !want && err != nil:
			t.Fatalf("%q: refused %v", program, err)
		}
		if err == nil && s.state != sArray {
			t.Fatalf("%q: the guard ends in state %d, not between commands", program, s.state)
		}
	})
}

func TestGuardRefusesWhatIsNotACommand(t *testing.T) {
	for _, junk := range []string{"GET k\r\n", "*1\r\n:5\r\n", "*x\r\n", "*1\r\n$-1\r\n", "*0\r\n"} {
		var s respScanner
		if err := s.feed([]byte(junk)); !errors.Is(err, errStream) {
			t.Errorf("%q: %v, want the stream refused", junk, err)
		}
		if err := s.feed([]byte("*1\r\n$4\r\nping\r\n")); err == nil {
			t.Errorf("%q: a write after the refusal passed", junk)
		}
	}
}

// BenchmarkGuard measures the guard's read of a pipeline of 10 SETs as
// go-redis writes it (one write).
func BenchmarkGuard(b *testing.B) {
	cmds := make([][]string, 10)
	for i := range cmds {
		cmds[i] = []string{"set", "t:{bench-tenant-1}:cart:42", "3"}
	}
	wire := encodeRESP(cmds)
	b.SetBytes(int64(len(wire)))
	var s respScanner
	for b.Loop() {
		if err := s.feed(wire); err != nil {
			b.Fatal(err)
		}
	}
}
