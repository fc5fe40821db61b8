package pgtenant

import (
	"reflect"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"
)

// A pgconn.Batch grows its message buffer and its two queues from nothing
// on every statement: most of the allocations of a scoped statement. Each
// connection keeps one Batch instead and empties it for the next statement,
// keeping the capacity. pgconn offers no way to empty a Batch, so
// batchLayout mirrors its fields; batchReusable checks, once, that the
// mirror matches pgconn's struct field by field (name, type, offset), and
// where it does not (another pgx version), a new Batch is used every time,
// as before.
type batchLayout struct {
	buf                   []byte
	statementDescriptions []*pgconn.StatementDescription
	resultFormats         [][]int16
	err                   error
}

var batchReusable = sameLayout(reflect.TypeFor[pgconn.Batch](), reflect.TypeFor[batchLayout]())

func sameLayout(a, b reflect.Type) bool {
	if a.Size() != b.Size() || a.NumField() != b.NumField() {
		return false
	}
	for i := range a.NumField() {
		fa, fb := a.Field(i), b.Field(i)
		if fa.Name != fb.Name || fa.Type != fb.Type || fa.Offset != fb.Offset {
			return false
		}
	}
	return true
}

// maxKeptBatch is the largest message buffer a connection keeps between
// statements; a larger one (big arguments) is dropped after use.
const maxKeptBatch = 64 << 10

// batch returns st's Batch, emptied, for a statement on c. While c is busy
// (rows of an earlier statement still open, so pgconn's reader still reads
// the queues), it returns a new Batch: pgconn will refuse the statement,
// and the open reader is left alone.
func (st *connState) batch(c *pgconn.PgConn) *pgconn.Batch {
	if !batchReusable || c.IsBusy() {
		return new(pgconn.Batch)
	}
	l := (*batchLayout)(unsafe.Pointer(&st.wire))
	if cap(l.buf) > maxKeptBatch {
		st.wire = pgconn.Batch{}
		return &st.wire
	}
	clear(l.statementDescriptions)
	l.buf = l.buf[:0]
	l.statementDescriptions = l.statementDescriptions[:0]
	l.resultFormats = l.resultFormats[:0]
	l.err = nil
	return &st.wire
}
