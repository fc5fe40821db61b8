package redistenant

import (
	"reflect"
	"unsafe"

	"github.com/redis/rueidis"
)

// Slot flags of rueidis commands (internal/cmds): a builder made with
// noSlot checks nothing, and its commands carry the flag; a cluster client
// sends a command with initSlot to any node.
const (
	initSlot = uint16(1 << 14)
	noSlot   = uint16(1 << 15)
)

type builderMirror struct {
	ks uint16
}

// A command built by the rueidis builder is rewritten in place: rueidis hands
// it over to the call and recycles it afterwards. A pinned command is reused
// by its owner, possibly from many goroutines, so it is copied instead. rueidis
// has no exported way to ask whether a command is pinned; these mirrors read
// its pin count without an allocation. mirrorsMatch checks at start-up that
// they still describe rueidis's types, and TestMirrorsMatchRueidis fails the
// build's tests when they do not. If a rueidis upgrade changed them anyway:
// every command is treated as pinned (copied), which is slower but correct;
// and on a cluster [Client.B] falls back to rueidis's own builder, which
// panics (in rueidis, at Build) on a multi-key command whose unprefixed keys
// hash to different slots. The package's helpers (MSet, MGet, MDel, ...)
// build with Arbitrary(...).Args(...), which checks no slot, so they never
// panic.

//lint:ignore U1000 the fields mirror rueidis's CommandSlice, which mirrorsMatch compares
type commandSliceMirror struct {
	s []string
	l int32
	r int32
}

type completedMirror struct {
	cs *commandSliceMirror
	cf uint16
	ks uint16
}

var mirrorsMatch = func() bool {
	same := func(t, m reflect.Type) bool {
		if t.Kind() != reflect.Struct || t.NumField() != m.NumField() || t.Size() != m.Size() {
			return false
		}
		for i := 0; i < t.NumField(); i++ {
			tf, mf := t.Field(i), m.Field(i)
			if tf.Name != mf.Name || tf.Offset != mf.Offset || tf.Type.Size() != mf.Type.Size() || tf.Type.Kind() != mf.Type.Kind() {
				return false
			}
		}
		return true
	}
	if !same(reflect.TypeFor[rueidis.Builder](), reflect.TypeFor[builderMirror]()) {
		return false
	}
	comp := reflect.TypeFor[rueidis.Completed]()
	cache := reflect.TypeFor[rueidis.Cacheable]()
	mirror := reflect.TypeFor[completedMirror]()
	if !same(comp, mirror) || !same(cache, mirror) {
		return false
	}
	return same(comp.Field(0).Type.Elem(), reflect.TypeFor[commandSliceMirror]())
}()

func pinnedCompleted(c *rueidis.Completed) bool {
	if !mirrorsMatch {
		return true
	}
	m := (*completedMirror)(unsafe.Pointer(c))
	return m.cs == nil || m.cs.r != 0
}

func pinnedCacheable(c *rueidis.Cacheable) bool {
	if !mirrorsMatch {
		return true
	}
	m := (*completedMirror)(unsafe.Pointer(c))
	return m.cs == nil || m.cs.r != 0
}

// uncheckedBuilder returns a builder that does not require a command's keys
// to share a cluster slot: before the prefix is added they need not, since
// every key of one tenant lands in the slot of the tenant's hash tag.
func uncheckedBuilder() (rueidis.Builder, bool) {
	var b rueidis.Builder
	if !mirrorsMatch {
		return b, false
	}
	(*builderMirror)(unsafe.Pointer(&b)).ks = noSlot
	return b, true
}

// clusterSlot makes the command built by an unchecked builder routable on a
// cluster: the no-slot flag gives way to "any node", which SetSlot then
// replaces with the slot of the first rewritten key.
func clusterSlot(ks *uint16) {
	if *ks&noSlot != 0 {
		*ks = initSlot
	}
}

func completedSlot(c *rueidis.Completed) *uint16 {
	return &(*completedMirror)(unsafe.Pointer(c)).ks
}

func cacheableSlot(c *rueidis.Cacheable) *uint16 {
	return &(*completedMirror)(unsafe.Pointer(c)).ks
}
