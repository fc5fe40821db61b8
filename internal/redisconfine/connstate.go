package redisconfine

import (
	"strings"
)

// A client's connections serve every tenant: rueidis multiplexes every
// tenant's commands over one pipelined connection per node, and go-redis
// hands a pooled connection to one tenant after another. A command that
// changes the state of a connection (MULTI, WATCH, CLIENT REPLY, SELECT, ...)
// changes it for the tenants that come after, and one that reads it (CLIENT
// TRACKINGINFO) reads what other tenants set. This
// table decides, for every command the server documents in its
// "connection" and "transactions" groups and for the other
// connection-scoped ones (subscriptions, cluster READONLY/READWRITE/ASKING,
// MONITOR, SWAPDB), where it may run. TestConnStateTableCoversTheServer
// checks it against COMMAND DOCS, so a command a new Redis adds to those
// groups fails the tests until it is decided here.

// connRule says where a connection-scoped command may run.
type connRule uint8

const (
	// connHarmless commands neither change the connection nor read what
	// another tenant set on it: allowed everywhere.
	connHarmless connRule = iota + 1
	// connBlock commands (MULTI, EXEC, DISCARD) run on the shared client
	// only inside one pipeline, as complete MULTI ... EXEC (or DISCARD)
	// blocks, which the client writes to one connection with nothing in
	// between; on a dedicated connection, anywhere.
	connBlock
	// connDedicated commands (WATCH, UNWATCH) run only on a dedicated
	// connection, one the tenant gives back clean.
	connDedicated
	// connSubscribe commands run only on a connection of their own for
	// subscriptions (rueidis's Receive, go-redis's PubSub through
	// goredistenant), or on a dedicated connection.
	connSubscribe
	// connRefused commands change or read state every tenant shares.
	connRefused
)

type connDecision struct {
	rule    connRule
	instead string
}

// Alternatives names, in one client's terms, what to use instead of a
// connection-scoped command refused where it was sent.
type Alternatives struct {
	// Block is the way to send a whole MULTI ... EXEC block.
	Block string
	// Watch is the way to run an optimistic transaction.
	Watch string
	// Subscribe is the way to subscribe.
	Subscribe string
}

const sharedConn = "it changes or reads the connection every tenant shares"

var connState = map[string]connDecision{
	"ping": {rule: connHarmless}, "echo": {rule: connHarmless},
	"client":    {connRefused, "a CLIENT subcommand"},
	"client|id": {rule: connHarmless}, "client|getname": {rule: connHarmless},
	"client|info": {rule: connHarmless}, "client|help": {rule: connHarmless},

	"multi": {rule: connBlock}, "exec": {rule: connBlock}, "discard": {rule: connBlock},
	"watch": {rule: connDedicated}, "unwatch": {rule: connDedicated},

	"subscribe": {rule: connSubscribe}, "psubscribe": {rule: connSubscribe}, "ssubscribe": {rule: connSubscribe},
	"unsubscribe": {rule: connSubscribe}, "punsubscribe": {rule: connSubscribe}, "sunsubscribe": {rule: connSubscribe},

	"select":              {connRefused, "a Redis database per deployment, not per tenant; tenants are separated by key prefix"},
	"swapdb":              {connRefused, "nothing: it swaps whole databases"},
	"reset":               {connRefused, "nothing: the client manages the connection"},
	"hello":               {connRefused, "the client's options for the protocol and credentials"},
	"auth":                {connRefused, "the client's options for credentials"},
	"quit":                {connRefused, "closing the whole client"},
	"monitor":             {connRefused, "nothing: it streams every client's commands"},
	"readonly":            {connRefused, "the client's options for reading from replicas"},
	"readwrite":           {connRefused, "the client's options for reading from replicas"},
	"asking":              {connRefused, "nothing: the client follows ASK redirections itself"},
	"client|reply":        {connRefused, "nothing: every tenant's replies would be switched off"},
	"client|setname":      {connRefused, "the client's options (client name)"},
	"client|setinfo":      {connRefused, "the client's options"},
	"client|tracking":     {connRefused, "the client's own client-side caching (rueidis DoCache), which serves every tenant"},
	"client|caching":      {connRefused, "the client's own client-side caching (rueidis DoCache), which serves every tenant"},
	"client|trackinginfo": {connRefused, "nothing: it shows other tenants' tracking prefixes"},
	"client|getredir":     {connRefused, "nothing: the client manages client-side caching"},
	"client|no-evict":     {connRefused, "nothing: it exempts every tenant's connection from eviction"},
	"client|no-touch":     {connRefused, "nothing: it changes LRU accounting for every tenant"},
	"client|kill":         {connRefused, "nothing: it acts on other clients"},
	"client|pause":        {connRefused, "nothing: it pauses every client"},
	"client|unpause":      {connRefused, "nothing: it acts on every client"},
	"client|unblock":      {connRefused, "nothing: it acts on other clients"},
	"client|list":         {connRefused, "nothing: it lists every client"},
}

// Usage says how a command reaches the server.
type Usage uint8

const (
	// Shared is one command on a connection other tenants use next.
	Shared Usage = iota
	// Multi is a command of one pipeline on such a connection: MULTI
	// blocks are allowed (checked whole by CheckBlocks).
	Multi
	// Receive is a subscription on a connection of its own.
	Receive
	// Dedicated is a command on a connection the tenant holds alone and
	// that is cleaned before anyone else gets it.
	Dedicated
)

// checkConnState refuses a connection-scoped command where it may not run.
func checkConnState(name string, args []string, use Usage, alt *Alternatives) error {
	d, ok := connState[name]
	if !ok {
		return nil
	}
	switch d.rule {
	case connHarmless:
		return nil
	case connBlock:
		if use == Multi || use == Dedicated {
			return nil
		}
	case connDedicated:
		if use == Dedicated {
			return nil
		}
	case connSubscribe:
		if use == Receive || use == Dedicated {
			return nil
		}
	}
	instead := d.instead
	switch d.rule {
	case connBlock:
		instead = alt.Block
	case connDedicated:
		instead = alt.Watch
	case connSubscribe:
		instead = alt.Subscribe
	}
	return &CommandError{Command: Display(args), Reason: sharedConn + "; use " + instead, Err: ErrConnectionState}
}

// CheckBlocks checks that the MULTI, EXEC and DISCARD of one pipeline on
// the shared client form complete, unnested blocks. name(i) is the name of
// command i of n.
func CheckBlocks(n int, name func(i int) string, alt *Alternatives) error {
	in := false
	for i := range n {
		switch n := name(i); {
		case strings.EqualFold(n, "multi"):
			if in {
				return &CommandError{Command: "MULTI", Reason: "nested in another MULTI block", Err: ErrConnectionState}
			}
			in = true
		case strings.EqualFold(n, "exec"), strings.EqualFold(n, "discard"):
			if !in {
				return &CommandError{Command: strings.ToUpper(n), Reason: "without MULTI before it in the same pipeline; use " + alt.Block, Err: ErrConnectionState}
			}
			in = false
		}
	}
	if in {
		return &CommandError{Command: "MULTI", Reason: "without EXEC or DISCARD after it in the same pipeline; use " + alt.Block, Err: ErrConnectionState}
	}
	return nil
}
