package pgtenant

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// beginSQL is the BEGIN statement for opts, as pgx writes it.
func beginSQL(opts pgx.TxOptions) string {
	if opts.BeginQuery != "" {
		return opts.BeginQuery
	}
	var b strings.Builder
	b.WriteString("begin")
	if opts.IsoLevel != "" {
		b.WriteString(" isolation level " + string(opts.IsoLevel))
	}
	if opts.AccessMode != "" {
		b.WriteString(" " + string(opts.AccessMode))
	}
	if opts.DeferrableMode != "" {
		b.WriteString(" " + string(opts.DeferrableMode))
	}
	return b.String()
}

// isStaleStatement reports whether err says a prepared statement can no
// longer be used as it is: its tables changed type under it (0A000) or it no
// longer exists (26000).
func isStaleStatement(err error) bool {
	if err == nil {
		return false // before the targets below, which escape: no allocation per statement
	}
	var pgErr *pgconn.PgError
	var se *scopeError
	return errors.As(err, &pgErr) && (pgErr.Code == "0A000" || pgErr.Code == "26000") && !errors.As(err, &se)
}

// splitArgs separates the pgx query options that lead args from the
// arguments proper. A QueryRewriter (such as pgx.NamedArgs) is applied here;
// other options (an explicit QueryExecMode, result formats) are returned so
// the caller can take the path that honours them.
func splitArgs(ctx context.Context, sql string, args []any) (string, []any, []any, error) {
	var opts []any
	for len(args) > 0 {
		switch a := args[0].(type) {
		case pgx.QueryRewriter:
			var err error
			sql, args, err = a.RewriteQuery(ctx, nil, sql, args[1:])
			if err != nil {
				return "", nil, nil, err
			}
			continue
		case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID:
			opts = append(opts, a)
			args = args[1:]
			continue
		}
		break
	}
	return sql, args, opts, nil
}

// splitCall is splitArgs for the statement path of Pool, Tx and Conn: the
// options (an explicit QueryExecMode, result formats) go back ahead of the
// arguments, where senderFor picks the sender of the call's exec mode and
// the encoder applies the result formats (the prepared modes apply them as
// pgx does; QueryExecModeExec and the simple protocol ignore them, as pgx
// does there).
func splitCall(ctx context.Context, sql string, args []any) (string, []any, error) {
	sql, args, opts, err := splitArgs(ctx, sql, args)
	if opts != nil {
		args = append(opts, args...)
	}
	return sql, args, err
}

// callMode returns the last QueryExecMode among the options that lead args
// (placed there by splitCall), or 0 when there is none.
func callMode(args []any) pgx.QueryExecMode {
	var mode pgx.QueryExecMode
	for _, a := range args {
		switch a := a.(type) {
		case pgx.QueryExecMode:
			mode = a
		case pgx.QueryResultFormats, pgx.QueryResultFormatsByOID:
		default:
			return mode
		}
	}
	return mode
}

// resultFormats takes the result-format options that lead args (placed
// there by splitCall) and returns them with the arguments
// proper; the last of each kind wins, as in pgx.
func resultFormats(args []any) (pgx.QueryResultFormats, pgx.QueryResultFormatsByOID, []any) {
	var formats pgx.QueryResultFormats
	var byOID pgx.QueryResultFormatsByOID
	for len(args) > 0 {
		switch a := args[0].(type) {
		case pgx.QueryResultFormats:
			formats = a
		case pgx.QueryResultFormatsByOID:
			byOID = a
		case pgx.QueryExecMode: // callMode's
		default:
			return formats, byOID, args
		}
		args = args[1:]
	}
	return formats, byOID, args
}
