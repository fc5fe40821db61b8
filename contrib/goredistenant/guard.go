package goredistenant

import (
	"net"
	"syscall"

	"github.com/tenancykit/tenancy/internal/redisconfine"
)

// go-redis writes its PubSub's SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE straight
// to a connection of their own, past every hook, so the hook cannot prefix
// their channels: a raw Subscribe could name another tenant's channel. Every
// connection the hooked client dials is therefore wrapped in a guard that
// reads the commands written to it and fails the write of a subscribe
// command, unless the connection was dialed for this package's PubSub (whose
// channels are prefixed before they are written). The guard reads only the
// RESP headers and the command name; payloads are skipped, not copied.

// guarded wraps c.
func guarded(c net.Conn) net.Conn {
	g := &guardConn{Conn: c}
	if _, ok := c.(syscall.Conn); ok {
		// go-redis checks an idle connection through its file descriptor;
		// keep that working for connections that have one.
		return &guardSysConn{g}
	}
	return g
}

type guardConn struct {
	net.Conn
	scan respScanner
}

func (g *guardConn) Write(b []byte) (int, error) {
	if err := g.scan.feed(b); err != nil {
		return 0, err
	}
	return g.Conn.Write(b)
}

type guardSysConn struct{ *guardConn }

func (g *guardSysConn) SyscallConn() (syscall.RawConn, error) {
	return g.Conn.(syscall.Conn).SyscallConn()
}

// respScanner follows the commands (RESP arrays of bulk strings) written to
// a connection across writes and refuses the subscribe commands. After a
// refusal or bytes that are not a command, every write fails: the
// connection's stream is no longer known, and go-redis discards it.
type respScanner struct {
	state   uint8
	n       int64 // the number being read
	elems   int64 // elements left in the current command
	left    int64 // bytes left in the current bulk string
	first   bool  // the bulk string is the command's name
	name    [len("psubscribe")]byte
	nameLen int64
	err     error
}

const (
	sArray   = iota // want '*'
	sCount          // the element count, then '\r'
	sCountLF        // want '\n'
	sBulk           // want '$'
	sLen            // the bulk length, then '\r'
	sLenLF          // want '\n'
	sData           // the bulk's bytes
	sDataCR         // want '\r'
	sDataLF         // want '\n'
)

// errStream is returned for bytes that are not a RESP command.
var errStream = &redisconfine.CommandError{Command: "?", Reason: "bytes on the connection that are not a RESP command", Err: redisconfine.ErrUnsupportedCommand}

// errRawSubscribe is returned for a subscribe command written past the hook.
var errRawSubscribe = &redisconfine.CommandError{
	Command: "SUBSCRIBE",
	Reason:  "go-redis writes a PubSub's subscriptions past every hook, so their channels would not be confined; use Client.Subscribe, PSubscribe or SSubscribe of goredistenant",
	Err:     redisconfine.ErrConnectionState,
}

func (s *respScanner) feed(b []byte) error {
	if s.err != nil {
		return s.err
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch s.state {
		case sArray, sBulk:
			want := byte('*')
			if s.state == sBulk {
				want = '$'
			}
			if c != want {
				return s.fail(errStream)
			}
			s.state++
			s.n = 0
		case sCount, sLen:
			switch {
			case c >= '0' && c <= '9' && s.n < 1<<40:
				s.n = s.n*10 + int64(c-'0')
			case c == '\r':
				s.state++
			default:
				return s.fail(errStream)
			}
		case sCountLF:
			if c != '\n' || s.n == 0 {
				return s.fail(errStream)
			}
			s.elems, s.first, s.state = s.n, true, sBulk
		case sLenLF:
			if c != '\n' {
				return s.fail(errStream)
			}
			s.left, s.nameLen, s.state = s.n, 0, sData
			if s.left == 0 {
				s.state = sDataCR
			}
		case sData:
			k := min(s.left, int64(len(b)-i))
			if s.first {
				for _, d := range b[i : i+int(k)] {
					if s.nameLen < int64(len(s.name)) {
						s.name[s.nameLen] = d | 0x20 // ASCII lower case; a non-letter never matches
					}
					s.nameLen++
				}
			}
			s.left -= k
			i += int(k) - 1
			if s.left == 0 {
				s.state = sDataCR
			}
		case sDataCR:
			if c != '\r' {
				return s.fail(errStream)
			}
			s.state = sDataLF
		case sDataLF:
			if c != '\n' {
				return s.fail(errStream)
			}
			if s.first && s.subscribe() {
				return s.fail(errRawSubscribe)
			}
			s.first = false
			s.elems--
			s.state = sBulk
			if s.elems == 0 {
				s.state = sArray
			}
		}
	}
	return nil
}

func (s *respScanner) subscribe() bool {
	if s.nameLen > int64(len(s.name)) {
		return false
	}
	switch string(s.name[:s.nameLen]) {
	case "subscribe", "psubscribe", "ssubscribe":
		return true
	}
	return false
}

func (s *respScanner) fail(err error) error {
	s.err = err
	return err
}
