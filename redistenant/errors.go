package redistenant

import (
	"errors"
	"fmt"
)

// ErrUnsupportedCommand is matched by the *CommandError returned, as the
// command's result and without sending it, for a command whose keys cannot
// be located: unknown to the key table, or arguments that do not have the
// shape the command's key spec describes.
var ErrUnsupportedCommand = errors.New("redistenant: cannot locate the keys of this command")

// ErrCommandNotAllowed is matched by the *CommandError returned, as the
// command's result and without sending it, for a command that reaches across
// the keyspace or the server (FLUSHALL, SELECT, KEYS without confinement,
// CONFIG, MONITOR, ...), or a script that declares no keys.
var ErrCommandNotAllowed = errors.New("redistenant: command not allowed for a tenant")

// CommandError names the refused command and why.
type CommandError struct {
	// Command is the command name, with its subcommand for container
	// commands ("CLIENT KILL").
	Command string
	// Reason says what was wrong and what is allowed instead.
	Reason string
	// Err is ErrUnsupportedCommand, ErrCommandNotAllowed or
	// ErrConnectionState.
	Err error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("%v: %s: %s", e.Err, e.Command, e.Reason)
}

// Unwrap returns ErrUnsupportedCommand, ErrCommandNotAllowed or
// ErrConnectionState.
func (e *CommandError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCommandNotAllowed for a command refused
// as connection state: such a command is not allowed either.
func (e *CommandError) Is(target error) bool {
	return target == ErrCommandNotAllowed && e.Err == ErrConnectionState
}

func notAllowed(cmd, reason string) error {
	return &CommandError{Command: cmd, Reason: reason, Err: ErrCommandNotAllowed}
}

func unsupported(cmd, reason string) error {
	return &CommandError{Command: cmd, Reason: reason, Err: ErrUnsupportedCommand}
}
