package redistenant

import (
	"errors"
	"strings"

	"github.com/redis/rueidis"
)

// rueidis multiplexes every tenant's commands over one pipelined connection
// per node. A command that changes the state of that connection (MULTI,
// WATCH, CLIENT REPLY, SELECT, ...) changes it for every tenant, and one
// that reads it (CLIENT TRACKINGINFO) reads what other tenants set. This
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
	// only inside DoMulti, as complete MULTI ... EXEC (or DISCARD) blocks,
	// which rueidis writes to the connection with nothing in between; on a
	// dedicated connection, anywhere.
	connBlock
	// connDedicated commands (WATCH, UNWATCH) run only on a dedicated
	// connection (Client.Dedicated, Client.Dedicate).
	connDedicated
	// connSubscribe commands run through Receive, or on a dedicated
	// connection.
	connSubscribe
	// connRefused commands change or read state every tenant shares.
	connRefused
)

type connDecision struct {
	rule    connRule
	instead string
}

const (
	useDedicatedWatch = "optimistic transactions (WATCH ... MULTI ... EXEC) on Client.Dedicated or Client.Dedicate"
	useDoMultiBlock   = "Client.DoMulti with the whole MULTI ... EXEC block, or a dedicated connection"
	insteadReceive    = "Client.Receive, or a dedicated connection"
	sharedConn        = "it changes or reads the connection every tenant shares"
)

var connState = map[string]connDecision{
	"ping": {rule: connHarmless}, "echo": {rule: connHarmless},
	"client":    {connRefused, "a CLIENT subcommand"},
	"client|id": {rule: connHarmless}, "client|getname": {rule: connHarmless},
	"client|info": {rule: connHarmless}, "client|help": {rule: connHarmless},

	"multi": {connBlock, useDoMultiBlock}, "exec": {connBlock, useDoMultiBlock}, "discard": {connBlock, useDoMultiBlock},
	"watch": {connDedicated, useDedicatedWatch}, "unwatch": {connDedicated, useDedicatedWatch},

	"subscribe": {connSubscribe, insteadReceive}, "psubscribe": {connSubscribe, insteadReceive}, "ssubscribe": {connSubscribe, insteadReceive},
	"unsubscribe": {connSubscribe, insteadReceive}, "punsubscribe": {connSubscribe, insteadReceive}, "sunsubscribe": {connSubscribe, insteadReceive},

	"select":              {connRefused, "a Redis database per deployment, not per tenant; tenants are separated by key prefix"},
	"swapdb":              {connRefused, "nothing: it swaps whole databases"},
	"reset":               {connRefused, "nothing: rueidis manages the connection"},
	"hello":               {connRefused, "rueidis.ClientOption for the protocol and credentials"},
	"auth":                {connRefused, "rueidis.ClientOption for credentials"},
	"quit":                {connRefused, "Client.Close for the whole client"},
	"monitor":             {connRefused, "nothing: it streams every client's commands"},
	"readonly":            {connRefused, "rueidis.ClientOption.SendToReplicas"},
	"readwrite":           {connRefused, "rueidis.ClientOption.SendToReplicas"},
	"asking":              {connRefused, "nothing: rueidis follows ASK redirections itself"},
	"client|reply":        {connRefused, "nothing: every tenant's replies would be switched off"},
	"client|setname":      {connRefused, "rueidis.ClientOption.ClientName"},
	"client|setinfo":      {connRefused, "rueidis.ClientOption"},
	"client|tracking":     {connRefused, "DoCache: rueidis manages client-side caching for every tenant"},
	"client|caching":      {connRefused, "DoCache: rueidis manages client-side caching for every tenant"},
	"client|trackinginfo": {connRefused, "nothing: it shows other tenants' tracking prefixes"},
	"client|getredir":     {connRefused, "nothing: rueidis manages client-side caching"},
	"client|no-evict":     {connRefused, "nothing: it exempts every tenant's connection from eviction"},
	"client|no-touch":     {connRefused, "nothing: it changes LRU accounting for every tenant"},
	"client|kill":         {connRefused, "nothing: it acts on other clients"},
	"client|pause":        {connRefused, "nothing: it pauses every client"},
	"client|unpause":      {connRefused, "nothing: it acts on every client"},
	"client|unblock":      {connRefused, "nothing: it acts on other clients"},
	"client|list":         {connRefused, "nothing: it lists every client"},
}

// usage says how a command reaches the server.
type usage uint8

const (
	useShared    usage = iota // Do, DoCache, DoStream on the shared client
	useMulti                  // DoMulti on the shared client: MULTI blocks allowed
	useReceive                // Receive on the shared client
	useDedicated              // a dedicated connection
)

// checkConnState refuses a connection-scoped command where it may not run.
func checkConnState(name string, args []string, use usage) error {
	d, ok := connState[name]
	if !ok {
		return nil
	}
	switch d.rule {
	case connHarmless:
		return nil
	case connBlock:
		if use == useMulti || use == useDedicated {
			return nil
		}
	case connDedicated:
		if use == useDedicated {
			return nil
		}
	case connSubscribe:
		if use == useReceive || use == useDedicated {
			return nil
		}
	}
	return &CommandError{Command: display(args), Reason: sharedConn + "; use " + d.instead, Err: ErrConnectionState}
}

// ErrConnectionState is matched by the *CommandError returned, without
// sending anything, for a command that would change or read the state of a
// connection shared by every tenant (MULTI outside a DoMulti block, WATCH,
// CLIENT REPLY, SELECT, ...). The error names the safe alternative. It also
// matches ErrCommandNotAllowed.
var ErrConnectionState = errors.New("redistenant: command would change a connection shared by every tenant")

// checkBlocks checks that the MULTI, EXEC and DISCARD of a DoMulti on the
// shared client form complete, unnested blocks.
func checkBlocks(multi []rueidis.Completed) error {
	in := false
	for i := range multi {
		args := multi[i].Commands()
		if len(args) == 0 {
			continue
		}
		switch n := args[0]; {
		case strings.EqualFold(n, "multi"):
			if in {
				return &CommandError{Command: "MULTI", Reason: "nested in another MULTI block", Err: ErrConnectionState}
			}
			in = true
		case strings.EqualFold(n, "exec"), strings.EqualFold(n, "discard"):
			if !in {
				return &CommandError{Command: strings.ToUpper(n), Reason: "without MULTI before it in the same DoMulti; use " + useDoMultiBlock, Err: ErrConnectionState}
			}
			in = false
		}
	}
	if in {
		return &CommandError{Command: "MULTI", Reason: "without EXEC or DISCARD after it in the same DoMulti; use " + useDoMultiBlock, Err: ErrConnectionState}
	}
	return nil
}
