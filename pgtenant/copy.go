package pgtenant

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
)

// copyStaged copies rows into tableName through a temporary staging table:
// PostgreSQL refuses COPY FROM into a table with row level security, so the
// rows are copied into a table of the same columns that is dropped at commit,
// then moved with INSERT ... SELECT, where every row passes the policy's
// WITH CHECK. It needs the TEMPORARY privilege and must run in a transaction
// that carries the tenant's scope.
func copyStaged(ctx context.Context, tx *pgx.Conn, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	cols := make([]string, len(columnNames))
	for i, c := range columnNames {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	list := strings.Join(cols, ", ")
	target := tableName.Sanitize()
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
