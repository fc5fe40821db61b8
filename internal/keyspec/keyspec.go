// Package keyspec tells where the keys are in a Redis command's arguments. Its
// table is generated from a Redis 7 server's own COMMAND reply (go generate
// runs ./gen against a live server) and committed, so redistenant needs no
// server round trip to find keys.
package keyspec

//go:generate go run ./gen -out table.go

import "strings"

// BeginKind is how a key spec finds its first key.
type BeginKind uint8

// FindKind is how a key spec finds the keys after the first.
type FindKind uint8

// SpecFlag are the flags of a key spec that matter here.
type SpecFlag uint16

// CmdFlag are the command flags that matter here.
type CmdFlag uint16

const (
	BeginUnknown BeginKind = iota
	BeginIndex
	BeginKeyword
)

const (
	FindUnknown FindKind = iota
	FindRange
	FindKeynum
)

const (
	// SpecIncomplete: the spec may miss keys (e.g. MIGRATE, SORT).
	SpecIncomplete SpecFlag = 1 << iota
	// SpecNotKey: the arguments are not keys (e.g. sharded pub/sub channels).
	SpecNotKey
	// SpecVariableFlags: the access flags depend on other arguments.
	SpecVariableFlags
)

const (
	CmdWrite CmdFlag = 1 << iota
	CmdReadonly
	CmdBlocking
	CmdMovableKeys
	CmdAdmin
	CmdPubSub
	CmdNoScript
	CmdDangerous // in the @dangerous ACL category
	CmdContainer // has subcommands: the spec is per subcommand
)

// Spec is one key spec of a command.
type Spec struct {
	Begin     BeginKind
	Index     int    // BeginIndex: position of the first key (argv[0] is the command)
	Keyword   string // BeginKeyword: the keys start after this token
	StartFrom int    // BeginKeyword: where to start looking; negative counts from the end
	Find      FindKind
	LastKey   int // FindRange: last key relative to the first; -1 the last argument, -2 the one before
	KeyStep   int // FindRange and FindKeynum: distance between keys
	Limit     int // FindRange with LastKey -1: only 1/Limit of the remaining arguments are keys
	KeyNumIdx int // FindKeynum: position of the number of keys, relative to the begin position
	FirstKey  int // FindKeynum: position of the first key, relative to the begin position
	Flags     SpecFlag
}

// Command describes one Redis command or subcommand.
type Command struct {
	Name  string // lowercase; subcommands as "container|sub"
	Arity int    // positive: exact argument count; negative: at least -Arity
	Flags CmdFlag
	Specs []Spec
}

// Lookup returns the command that args (argv, args[0] the command name)
// invoke, resolving subcommands of container commands such as CLIENT or
// OBJECT. ok is false for a command the table does not know. Names in upper
// or lower case are found without allocating.
func Lookup(args []string) (Command, bool) {
	if len(args) == 0 {
		return Command{}, false
	}
	c, ok := byName(args[0])
	if !ok || c.Flags&CmdContainer == 0 || len(args) < 2 {
		return c, ok
	}
	sub, ok := subcommands[c.Name][args[1]]
	if !ok {
		sub, ok = subcommands[c.Name][strings.ToLower(args[1])]
	}
	return sub, ok
}

func byName(name string) (Command, bool) {
	if c, ok := table[name]; ok {
		return c, true
	}
	if c, ok := upper[name]; ok {
		return c, true
	}
	c, ok := table[strings.ToLower(name)]
	return c, ok
}

// upper indexes the top-level commands by upper-case name, as the rueidis
// builder writes them; subcommands indexes each container's subcommands by
// their own name in both cases.
var upper, subcommands = func() (map[string]Command, map[string]map[string]Command) {
	up := make(map[string]Command)
	subs := make(map[string]map[string]Command)
	for name, c := range table {
		container, sub, isSub := strings.Cut(name, "|")
		if !isSub {
			up[strings.ToUpper(name)] = c
			continue
		}
		if subs[container] == nil {
			subs[container] = make(map[string]Command)
		}
		subs[container][sub] = c
		subs[container][strings.ToUpper(sub)] = c
	}
	return up, subs
}()

// All returns every command in the table, for tests and documentation.
func All() map[string]Command { return table }

// AppendPositions appends to dst the positions in args of the keys that spec
// s names, or returns ok false when the arguments do not have the shape the
// spec describes.
func (s Spec) AppendPositions(dst []int, args []string) (pos []int, ok bool) {
	n := len(args)
	begin := -1
	switch s.Begin {
	case BeginIndex:
		begin = s.Index
	case BeginKeyword:
		if s.StartFrom >= 0 {
			for i := s.StartFrom; i < n; i++ {
				if strings.EqualFold(args[i], s.Keyword) {
					begin = i + 1
					break
				}
			}
		} else {
			for i := n + s.StartFrom; i > 0; i-- {
				if strings.EqualFold(args[i], s.Keyword) {
					begin = i + 1
					break
				}
			}
		}
		if begin < 0 {
			return dst, true // the keyword is absent: this spec names no key
		}
	default:
		return dst, false
	}
	if begin >= n {
		return dst, s.Begin == BeginKeyword
	}
	switch s.Find {
	case FindRange:
		step := max(s.KeyStep, 1)
		var last int
		switch {
		case s.LastKey >= 0:
			last = begin + s.LastKey
		case s.LastKey == -1 && s.Limit > 1:
			last = begin + (n-begin)/s.Limit - 1
		default:
			last = n + s.LastKey
		}
		if last >= n || last < begin {
			return dst, false
		}
		for i := begin; i <= last; i += step {
			dst = append(dst, i)
		}
		return dst, true
	case FindKeynum:
		idx := begin + s.KeyNumIdx
		if idx >= n {
			return dst, false
		}
		num, err := atoi(args[idx])
		if err != nil || num < 0 {
			return dst, false
		}
		first := begin + s.FirstKey
		step := max(s.KeyStep, 1)
		if num > 0 && first+(num-1)*step >= n {
			return dst, false
		}
		for i := 0; i < num; i++ {
			dst = append(dst, first+i*step)
		}
		return dst, true
	}
	return dst, false
}

func atoi(s string) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, errNotNumber
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errNotNumber
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

type keyspecError string

func (e keyspecError) Error() string { return string(e) }

const errNotNumber = keyspecError("keyspec: not a number")
