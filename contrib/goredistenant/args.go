package goredistenant

import (
	"encoding"
	"net"
	"strconv"
	"time"
	"unsafe"
)

// argString returns v as go-redis writes it on the wire (its proto.Writer's
// WriteArg), for planning and for building a prefixed key. A []byte is
// viewed, not copied: the view is only read while the command is planned,
// and a key built from it is a new string. ok is false for a type go-redis
// cannot write either.
func argString(v any) (s string, ok bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return unsafe.String(unsafe.SliceData(v), len(v)), true
	case nil:
		return "", true
	case *string:
		if v == nil {
			return "", true
		}
		return *v, true
	case int:
		return strconv.FormatInt(int64(v), 10), true
	case int8:
		return strconv.FormatInt(int64(v), 10), true
	case int16:
		return strconv.FormatInt(int64(v), 10), true
	case int32:
		return strconv.FormatInt(int64(v), 10), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case uint:
		return strconv.FormatUint(uint64(v), 10), true
	case uint8:
		return strconv.FormatUint(uint64(v), 10), true
	case uint16:
		return strconv.FormatUint(uint64(v), 10), true
	case uint32:
		return strconv.FormatUint(uint64(v), 10), true
	case uint64:
		return strconv.FormatUint(v, 10), true
	case float32:
		return strconv.FormatFloat(float64(v), 'f', -1, 64), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		if v {
			return "1", true
		}
		return "0", true
	case time.Time:
		return v.Format(time.RFC3339Nano), true
	case time.Duration:
		return strconv.FormatInt(v.Nanoseconds(), 10), true
	}
	return pointerArg(v)
}

// pointerArg covers, in go-redis's order, the pointer forms it writes (nil
// as zero, a nil *uint8 as the empty string), then BinaryMarshaler and
// net.IP.
func pointerArg(v any) (string, bool) {
	switch v := v.(type) {
	case *int:
		return deref(v, argString)
	case *int8:
		return deref(v, argString)
	case *int16:
		return deref(v, argString)
	case *int32:
		return deref(v, argString)
	case *int64:
		return deref(v, argString)
	case *uint:
		return deref(v, argString)
	case *uint8:
		if v == nil {
			return "", true
		}
		return argString(*v)
	case *uint16:
		return deref(v, argString)
	case *uint32:
		return deref(v, argString)
	case *uint64:
		return deref(v, argString)
	case *float32:
		return deref(v, argString)
	case *float64:
		return deref(v, argString)
	case *bool:
		return deref(v, argString)
	case *time.Time:
		if v == nil {
			return time.Time{}.Format(time.RFC3339Nano), true
		}
		return argString(*v)
	case *time.Duration:
		return deref(v, argString)
	case encoding.BinaryMarshaler:
		b, err := v.MarshalBinary()
		if err != nil {
			return "", false
		}
		return string(b), true
	case net.IP:
		return string(v), true
	}
	return "", false
}

func deref[T any](p *T, f func(any) (string, bool)) (string, bool) {
	var zero T
	if p == nil {
		return f(zero)
	}
	return f(*p)
}
