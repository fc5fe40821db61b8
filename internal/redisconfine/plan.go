// Package redisconfine decides how a Redis command is confined to one
// tenant's namespace: which arguments are keys, channels or patterns (from
// the key table of internal/keyspec and hand-written rules), which commands
// are refused, and where a command that changes a connection's state may run.
// It is shared by redistenant (rueidis) and contrib/goredistenant (go-redis),
// so both clients apply the same table and rules.
package redisconfine

import (
	"strings"

	"github.com/tenancykit/tenancy/internal/keyspec"
)

// EditKind says how an argument is confined.
type EditKind uint8

const (
	EditKey     EditKind = iota // a key or channel: prefixed
	EditPattern                 // a glob over keys or channels: the escaped prefix goes first
)

// Edit is one argument to confine.
type Edit struct {
	Pos  int
	Kind EditKind
}

// Plan is what confining one command takes. The first edits live in an
// array, so planning a command with few keys allocates nothing.
type Plan struct {
	n     int
	small [16]Edit
	more  []Edit
	// MatchAll asks for "MATCH <prefix>*" to be appended (SCAN without MATCH,
	// PUBSUB CHANNELS without a pattern).
	MatchAll bool
	// ToTenantSlot routes a keyless command (KEYS, SCAN) to the node that
	// holds the tenant's slot: on a cluster, every key of a tenant is there.
	ToTenantSlot bool
	// dedupe is set while adding positions from a second key spec, which may
	// name a key again.
	dedupe bool
}

// Len is the number of edits.
func (p *Plan) Len() int { return p.n + len(p.more) }

// At returns edit i.
func (p *Plan) At(i int) Edit {
	if i < p.n {
		return p.small[i]
	}
	return p.more[i-p.n]
}

// add records an Edit; with dedupe, once per position, so a key named by
// two specs is prefixed once.
func (p *Plan) add(pos int, kind EditKind) {
	if p.dedupe {
		for i := 0; i < p.Len(); i++ {
			if p.At(i).Pos == pos {
				return
			}
		}
	}
	if p.n < len(p.small) {
		p.small[p.n] = Edit{Pos: pos, Kind: kind}
		p.n++
		return
	}
	p.more = append(p.more, Edit{Pos: pos, Kind: kind})
}

// keyless commands that touch no tenant data and may run as they are.
// Connection-scoped ones among them are decided first, in connState.
var keyless = map[string]bool{
	"ping": true, "echo": true, "time": true, "multi": true, "exec": true, "discard": true,
	"unwatch": true, "wait": true, "waitaof": true, "lolwut": true,
	"command": true, "command|count": true, "command|docs": true, "command|info": true,
	"command|list": true, "command|getkeys": true, "command|getkeysandflags": true,
	"script|load": true, "script|exists": true,
	"client|id": true, "client|getname": true, "client|info": true, "client|help": true,
}

// denied commands reach across the keyspace, the databases or the server,
// or touch state shared by every tenant (functions, ACLs, other clients).
var denied = map[string]string{
	"flushall":  "deletes every tenant's keys; use Client.Purge for one tenant",
	"flushdb":   "deletes every tenant's keys; use Client.Purge for one tenant",
	"move":      "moves keys to another database",
	"randomkey": "returns a key of any tenant", "dbsize": "counts every tenant's keys",
	"migrate": "moves keys to another server",
	"debug":   "server debugging", "shutdown": "stops the server", "save": "server persistence",
	"bgsave": "server persistence", "bgrewriteaof": "server persistence", "lastsave": "server persistence",
	"replicaof": "server replication", "slaveof": "server replication", "sync": "server replication",
	"psync": "server replication", "failover": "server replication", "info": "server-wide information",
	"pubsub|numpat": "counts every tenant's pattern subscriptions",
	"script|flush":  "the script cache is shared by every tenant", "script|kill": "kills any tenant's script",
}

// deniedContainers are refused with any subcommand not listed in keyless
// or handled specially.
var deniedContainers = map[string]string{
	"config": "server configuration", "acl": "server access control", "cluster": "cluster administration",
	"slowlog": "shows every client's commands", "latency": "server diagnostics", "module": "server modules",
	"function": "functions are shared by every tenant; FCALL with declared keys is allowed",
	"client":   "acts on other clients", "memory": "server memory; MEMORY USAGE with a key is allowed",
	"script": "the script cache is shared by every tenant; SCRIPT LOAD and EXISTS are allowed",
}

// Display names the command of args for error messages.
func Display(args []string) string {
	if len(args) == 0 {
		return ""
	}
	name := strings.ToUpper(args[0])
	if c, ok := keyspec.Lookup(args[:1]); ok && c.Flags&keyspec.CmdContainer != 0 && len(args) > 1 {
		name += " " + strings.ToUpper(args[1])
	}
	return name
}

// For works out how to confine args (argv, args[0] the command name),
// sent as use says, to one tenant's namespace. It allocates only to report
// an error.
func For(args []string, use Usage, alt *Alternatives) (Plan, error) {
	if len(args) == 0 {
		return Plan{}, Unsupported("", "empty command")
	}
	cmd, ok := keyspec.Lookup(args)
	if !ok {
		// A connection command newer than the key table (CLIENT NO-TOUCH
		// on Redis 7.0's table) is still decided by connState.
		name := strings.ToLower(args[0])
		if len(args) > 1 {
			if err := checkConnState(name+"|"+strings.ToLower(args[1]), args, use, alt); err != nil {
				return Plan{}, err
			}
		}
		if err := checkConnState(name, args, use, alt); err != nil {
			return Plan{}, err
		}
		if reason, denied := deniedContainers[strings.ToLower(args[0])]; denied {
			return Plan{}, NotAllowed(Display(args), reason)
		}
		return Plan{}, Unsupported(Display(args), "not in the key table of Redis 7")
	}
	name := cmd.Name
	if err := checkConnState(name, args, use, alt); err != nil {
		return Plan{}, err
	}
	if reason, ok := denied[name]; ok {
		return Plan{}, NotAllowed(Display(args), reason)
	}
	if h, ok := handlers[name]; ok {
		return h(args)
	}
	if keyless[name] {
		return Plan{}, nil
	}
	if container, _, isSub := strings.Cut(name, "|"); isSub && !allowedSub[name] {
		if reason, ok := deniedContainers[container]; ok {
			return Plan{}, NotAllowed(Display(args), reason)
		}
	}
	if len(cmd.Specs) == 0 {
		return Plan{}, NotAllowed(Display(args), "it has no keys, so it would act beyond the tenant")
	}
	if cmd.Arity > 0 && len(args) != cmd.Arity || cmd.Arity < 0 && len(args) < -cmd.Arity {
		return Plan{}, Unsupported(Display(args), "wrong number of arguments")
	}
	var p Plan
	var buf [16]int
	for i, s := range cmd.Specs {
		if s.Flags&keyspec.SpecIncomplete != 0 {
			return Plan{}, Unsupported(Display(args), "its key spec is incomplete")
		}
		pos, ok := s.AppendPositions(buf[:0], args)
		if !ok {
			return Plan{}, Unsupported(Display(args), "its arguments do not match its key spec")
		}
		p.dedupe = i > 0
		for _, at := range pos {
			p.add(at, EditKey)
		}
	}
	return p, nil
}

// allowedSub are subcommands of denied containers that act on a key.
var allowedSub = map[string]bool{"memory|usage": true}

type handler func(args []string) (Plan, error)

var handlers map[string]handler

func init() {
	channels := func(from int) handler { // every argument from `from` is a channel
		return func(args []string) (Plan, error) {
			var p Plan
			for i := from; i < len(args); i++ {
				p.add(i, EditKey)
			}
			return p, nil
		}
	}
	patterns := func(from int) handler {
		return func(args []string) (Plan, error) {
			var p Plan
			for i := from; i < len(args); i++ {
				p.add(i, EditPattern)
			}
			return p, nil
		}
	}
	handlers = map[string]handler{
		"subscribe": channels(1), "unsubscribe": channels(1), "ssubscribe": channels(1), "sunsubscribe": channels(1),
		"psubscribe": patterns(1), "punsubscribe": patterns(1),
		"publish":              publish,
		"spublish":             publish,
		"pubsub|numsub":        channels(2),
		"pubsub|shardnumsub":   channels(2),
		"pubsub|channels":      optionalPattern,
		"pubsub|shardchannels": optionalPattern,
		"keys":                 keysCmd,
		"scan":                 scanCmd,
		"sort":                 sortCmd,
		"sort_ro":              sortCmd,
		"eval":                 script,
		"eval_ro":              script,
		"evalsha":              script,
		"evalsha_ro":           script,
		"fcall":                script,
		"fcall_ro":             script,
		"copy":                 copyCmd,
	}
}

func publish(args []string) (Plan, error) {
	if len(args) != 3 {
		return Plan{}, Unsupported(Display(args), "want a channel and a message")
	}
	var p Plan
	p.add(1, EditKey)
	return p, nil
}

func optionalPattern(args []string) (Plan, error) {
	var p Plan
	if len(args) > 2 {
		p.add(2, EditPattern)
		return p, nil
	}
	p.MatchAll = true
	return p, nil
}

func keysCmd(args []string) (Plan, error) {
	if len(args) != 2 {
		return Plan{}, Unsupported(Display(args), "want one pattern")
	}
	p := Plan{ToTenantSlot: true}
	p.add(1, EditPattern)
	return p, nil
}

// scanCmd confines SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]: the
// pattern gets the prefix, and without one MATCH <prefix>* is added.
func scanCmd(args []string) (Plan, error) {
	var p Plan
	if len(args) < 2 {
		return p, Unsupported(Display(args), "want a cursor")
	}
	matched := false
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			return p, Unsupported(Display(args), "option without a value")
		}
		if strings.EqualFold(args[i], "MATCH") {
			p.add(i+1, EditPattern)
			matched = true
		}
	}
	p.MatchAll = !matched
	p.ToTenantSlot = true
	return p, nil
}

// sortCmd confines SORT key [BY pattern] [LIMIT o c] [GET pattern ...]
// [ASC|DESC] [ALPHA] [STORE dest]: BY and GET patterns name keys too.
func sortCmd(args []string) (Plan, error) {
	if len(args) < 2 {
		return Plan{}, Unsupported(Display(args), "want a key")
	}
	var p Plan
	p.add(1, EditKey)
	for i := 2; i < len(args); i++ {
		switch strings.ToUpper(args[i]) {
		case "BY", "STORE":
			if i+1 >= len(args) {
				return Plan{}, Unsupported(Display(args), args[i]+" without a value")
			}
			i++
			p.add(i, EditKey) // a BY pattern is a key name with '*' substituted
		case "GET":
			if i+1 >= len(args) {
				return Plan{}, Unsupported(Display(args), "GET without a pattern")
			}
			i++
			if args[i] != "#" { // "#" is the element itself, not a key
				p.add(i, EditKey)
			}
		case "LIMIT":
			i += 2
		}
	}
	return p, nil
}

// script confines EVAL-like commands: script numkeys key... arg... . A script
// that declares no keys is refused: it could reach any key, and declaring
// keys is how it is confined (and routed on a cluster).
func script(args []string) (Plan, error) {
	if len(args) < 3 {
		return Plan{}, Unsupported(Display(args), "want a script and numkeys")
	}
	cmd, _ := keyspec.Lookup(args)
	var p Plan
	var buf [16]int
	for _, s := range cmd.Specs {
		pos, ok := s.AppendPositions(buf[:0], args)
		if !ok {
			return Plan{}, Unsupported(Display(args), "numkeys does not match the arguments")
		}
		for _, i := range pos {
			p.add(i, EditKey)
		}
	}
	if p.Len() == 0 {
		return Plan{}, NotAllowed(Display(args), "a script must declare the keys it uses (numkeys > 0); undeclared keys cannot be confined")
	}
	return p, nil
}

// copyCmd refuses COPY to another database.
func copyCmd(args []string) (Plan, error) {
	for _, a := range args[min(3, len(args)):] {
		if strings.EqualFold(a, "DB") {
			return Plan{}, NotAllowed(Display(args), "copies to another database")
		}
	}
	if len(args) < 3 {
		return Plan{}, Unsupported(Display(args), "want a source and a destination")
	}
	var p Plan
	p.add(1, EditKey)
	p.add(2, EditKey)
	return p, nil
}

// EscapeGlob escapes the glob metacharacters of s, so a prefix matches
// itself literally in MATCH and KEYS patterns.
func EscapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\^`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\', '^':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Apply rewrites args as p says and returns them, with MATCH appended when
// p asks for it. Every rewritten argument is a substring of one new string,
// so a command costs one allocation however many keys it has.
func Apply(args []string, p Plan, prefix string) []string {
	esc := EscapeGlob(prefix)
	size := 0
	for i := 0; i < p.Len(); i++ {
		e := p.At(i)
		if e.Kind == EditPattern {
			size += len(esc)
		} else {
			size += len(prefix)
		}
		size += len(args[e.Pos])
	}
	var b strings.Builder
	b.Grow(size)
	for i := 0; i < p.Len(); i++ {
		e := p.At(i)
		if e.Kind == EditPattern {
			b.WriteString(esc)
		} else {
			b.WriteString(prefix)
		}
		b.WriteString(args[e.Pos])
	}
	all := b.String()
	off := 0
	for i := 0; i < p.Len(); i++ {
		e := p.At(i)
		n := len(prefix)
		if e.Kind == EditPattern {
			n = len(esc)
		}
		n += len(args[e.Pos])
		args[e.Pos] = all[off : off+n]
		off += n
	}
	if p.MatchAll {
		if strings.EqualFold(args[0], "SCAN") {
			args = append(args, "MATCH", esc+"*")
		} else {
			args = append(args, esc+"*")
		}
	}
	return args
}

// FirstKey returns the first key of args after Apply, for cluster routing.
func FirstKey(args []string, p Plan) (string, bool) {
	for i := 0; i < p.Len(); i++ {
		if e := p.At(i); e.Kind == EditKey {
			return args[e.Pos], true
		}
	}
	return "", false
}
