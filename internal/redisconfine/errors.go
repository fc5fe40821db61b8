package redisconfine

import (
	"errors"
	"fmt"
)

// The errors are documented where users meet them: redistenant re-exports
// each of them.
var (
	ErrUnsupportedCommand = errors.New("redistenant: cannot locate the keys of this command")
	ErrCommandNotAllowed  = errors.New("redistenant: command not allowed for a tenant")
	ErrConnectionState    = errors.New("redistenant: command would change a connection shared by every tenant")
)

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

// NotAllowed is a CommandError for a command refused as reaching beyond the
// tenant.
func NotAllowed(cmd, reason string) error {
	return &CommandError{Command: cmd, Reason: reason, Err: ErrCommandNotAllowed}
}

// Unsupported is a CommandError for a command whose keys cannot be located.
func Unsupported(cmd, reason string) error {
	return &CommandError{Command: cmd, Reason: reason, Err: ErrUnsupportedCommand}
}
