package pgtenant

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// copyStaged copies rows into tableName through a temporary staging table:
// PostgreSQL refuses COPY FROM into a table with row level security, so the
// rows are copied into a table of the same columns that is dropped at commit,
// then moved with INSERT ... SELECT, where every row passes the policy's
// WITH CHECK. It needs the TEMPORARY privilege and must run in a transaction
// that carries the tenant's scope.
// In Citus mode its carrier copies with copyInserts instead.
func copyStaged(ctx context.Context, tx *pgx.Conn, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	target, list, _ := copyTarget(tableName, columnNames)
	const staging = "tenancy_copy_staging"
	// Dropped first, not after: a second CopyFrom in the same transaction
	// reuses the name, and the INSERT's command tag is the count returned.
	if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS pg_temp."+staging+"; CREATE TEMPORARY TABLE "+staging+" ON COMMIT DROP AS SELECT "+list+" FROM "+target+" WITH NO DATA",
		pgx.QueryExecModeSimpleProtocol); err != nil {
		return 0, err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pg_temp", staging}, columnNames, rowSrc); err != nil {
		return 0, err
	}
	ct, err := tx.Exec(ctx, "INSERT INTO "+target+" ("+list+") SELECT "+list+" FROM pg_temp."+staging,
		pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return 0, err
	}
	return ct.RowsAffected(), nil
}

// copyInserts sends the rows of rowSrc as INSERTs of up to 1,000 rows each
// (fewer for wide rows: at most 65,535 parameters), described before they
// run so that values are encoded for the columns' types as COPY would. The
// statements are unnamed: pgx's statement cache, which would reuse a
// statement parsed in another tenant's schema, is never used.
func copyInserts(ctx context.Context, tx *pgx.Conn, target, list string, ncols int, rowSrc pgx.CopyFromSource) (int64, error) {
	if ncols == 0 {
		return 0, errors.New("pgtenant: CopyFrom: no columns")
	}
	per := min(1000, 65535/ncols)
	var total int64
	args := make([]any, 0, per*ncols)
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		var b strings.Builder
		b.WriteString("INSERT INTO " + target + " (" + list + ") VALUES ")
		for r := 0; r < len(args)/ncols; r++ {
			if r > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for c := 0; c < ncols; c++ {
				if c > 0 {
					b.WriteString(", ")
				}
				b.WriteString("$" + strconv.Itoa(r*ncols+c+1))
			}
			b.WriteByte(')')
		}
		ct, err := tx.Exec(ctx, b.String(), append([]any{pgx.QueryExecModeDescribeExec}, args...)...)
		total += ct.RowsAffected()
		args = args[:0]
		return err
	}
	for rowSrc.Next() {
		vals, err := rowSrc.Values()
		if err != nil {
			return total, err
		}
		if len(vals) != ncols {
			return total, fmt.Errorf("pgtenant: CopyFrom: a row has %d values for %d columns", len(vals), ncols)
		}
		args = append(args, vals...)
		if len(args) == per*ncols {
			if err := flush(); err != nil {
				return total, err
			}
		}
	}
	if err := rowSrc.Err(); err != nil {
		return total, err
	}
	return total, flush()
}

// copyTarget quotes tableName and columnNames for the statements of a copy.
func copyTarget(tableName pgx.Identifier, columnNames []string) (target, list string, n int) {
	cols := make([]string, len(columnNames))
	for i, c := range columnNames {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	return tableName.Sanitize(), strings.Join(cols, ", "), len(cols)
}
