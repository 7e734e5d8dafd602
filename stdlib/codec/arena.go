package codec

import (
	"time"
	"unsafe"
)

// Arena boxes scalar values into interfaces without one allocation per
// value: values are stored in chunks of typed slots and each interface
// points at its slot. Converting a string, int64, float64 or time.Time to
// an interface normally allocates a copy of it; a record of a handful of
// fields then costs a handful of small allocations, which dominates
// decoding and generating records.
//
// A boxed value is never written again, so the interfaces behave exactly
// like ordinarily boxed ones; a chunk stays alive while any of its values
// does. The zero Arena is ready to use; an Arena is not safe for
// concurrent use.
type Arena struct {
	strs  []string
	words []uint64
	times []time.Time
	text  []byte
}

// arenaChunk is how many slots of a kind are allocated at once.
const arenaChunk = 256

// eface is the layout of an empty interface.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

func typeOf(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

var (
	stringType  = typeOf("")
	int64Type   = typeOf(int64(0))
	float64Type = typeOf(float64(0))
	timeType    = typeOf(time.Time{})
)

func makeAny(typ, data unsafe.Pointer) (v any) {
	e := (*eface)(unsafe.Pointer(&v))
	e.typ, e.data = typ, data
	return v
}

// String returns s as an interface.
func (a *Arena) String(s string) any {
	if len(a.strs) == cap(a.strs) {
		a.strs = make([]string, 0, arenaChunk)
	}
	a.strs = append(a.strs, s)
	return makeAny(stringType, unsafe.Pointer(&a.strs[len(a.strs)-1]))
}

func (a *Arena) word(w uint64) unsafe.Pointer {
	if len(a.words) == cap(a.words) {
		a.words = make([]uint64, 0, arenaChunk)
	}
	a.words = append(a.words, w)
	return unsafe.Pointer(&a.words[len(a.words)-1])
}

// Int returns n as an interface holding an int64.
func (a *Arena) Int(n int64) any {
	if n >= 0 && n < 256 {
		return n // the runtime boxes these without allocating
	}
	return makeAny(int64Type, a.word(uint64(n)))
}

// Float returns f as an interface holding a float64.
func (a *Arena) Float(f float64) any {
	return makeAny(float64Type, a.word(*(*uint64)(unsafe.Pointer(&f))))
}

// Time returns t as an interface holding a time.Time.
func (a *Arena) Time(t time.Time) any {
	if len(a.times) == cap(a.times) {
		a.times = make([]time.Time, 0, arenaChunk/4)
	}
	a.times = append(a.times, t)
	return makeAny(timeType, unsafe.Pointer(&a.times[len(a.times)-1]))
}

// textChunk is the size of the chunks Text copies into.
const textChunk = 256 << 10

// Text returns a string holding a copy of b. Copies share chunks of
// memory, never written again once handed out.
func (a *Arena) Text(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > textChunk/4 {
		return string(b)
	}
	if cap(a.text)-len(a.text) < len(b) {
		a.text = make([]byte, 0, textChunk)
	}
	start := len(a.text)
	a.text = append(a.text, b...)
	return unsafe.String(&a.text[start], len(b))
}
