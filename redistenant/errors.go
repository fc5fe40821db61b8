package redistenant

import (
	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/redisconfine"
)

// ErrUnsupportedCommand is matched by the *CommandError returned, as the
// command's result and without sending it, for a command whose keys cannot
// be located: unknown to the key table, or arguments that do not have the
// shape the command's key spec describes.
var ErrUnsupportedCommand = redisconfine.ErrUnsupportedCommand

// ErrCommandNotAllowed is matched by the *CommandError returned, as the
// command's result and without sending it, for a command that reaches across
// the keyspace or the server (FLUSHALL, SELECT, KEYS without confinement,
// CONFIG, MONITOR, ...), or a script that declares no keys.
var ErrCommandNotAllowed = redisconfine.ErrCommandNotAllowed

// ErrConnectionState is matched by the *CommandError returned, without
// sending anything, for a command that would change or read the state of a
// connection shared by every tenant (MULTI outside a DoMulti block, WATCH,
// CLIENT REPLY, SELECT, ...). The error names the safe alternative. It also
// matches ErrCommandNotAllowed.
var ErrConnectionState = redisconfine.ErrConnectionState

// CommandError names the refused command and why: its Command (with the
// subcommand of a container command, "CLIENT KILL"), a Reason that says what
// was wrong and what is allowed instead, and Err, one of
// ErrUnsupportedCommand, ErrCommandNotAllowed or ErrConnectionState, which
// Unwrap returns. A command refused as connection state also matches
// ErrCommandNotAllowed.
type CommandError = redisconfine.CommandError

// alternatives names what to use instead of a refused connection-scoped
// command, in this package's terms.
var alternatives = &redisconfine.Alternatives{
	Block:     "Client.DoMulti with the whole MULTI ... EXEC block, or a dedicated connection",
	Watch:     "optimistic transactions (WATCH ... MULTI ... EXEC) on Client.Dedicated or Client.Dedicate",
	Subscribe: "Client.Receive, or a dedicated connection",
}

func unsupported(cmd, reason string) error { return redisconfine.Unsupported(cmd, reason) }

// checkBlocks checks that the MULTI, EXEC and DISCARD of a DoMulti on the
// shared client form complete, unnested blocks.
func checkBlocks(multi []rueidis.Completed) error {
	return redisconfine.CheckBlocks(len(multi), func(i int) string {
		if args := multi[i].Commands(); len(args) > 0 {
			return args[0]
		}
		return ""
	}, alternatives)
}
