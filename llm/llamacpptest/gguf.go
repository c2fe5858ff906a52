package llamacpptest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// GGUF version 3, the container llama.cpp loads models from: a header, the
// metadata key/value pairs, the tensor directory, then the tensor data, each
// tensor aligned to 32 bytes. The layout follows ggml's gguf.cpp
// (ggml/src/gguf.cpp in ggml-org/llama.cpp) and docs/gguf.md of ggml.
const (
	ggufVersion   = 3
	ggufAlignment = 32
)

// GGUF metadata value types (enum gguf_type).
const (
	ggufUint32  = 4
	ggufInt32   = 5
	ggufFloat32 = 6
	ggufBool    = 7
	ggufString  = 8
	ggufArray   = 9
)

// ggmlF32 is GGML_TYPE_F32, the only tensor type written here.
const ggmlF32 = 0

// ggufKV is one metadata pair; Value is uint32, int32, float32, bool,
// string, []string, []float32 or []int32.
type ggufKV struct {
	Key   string
	Value any
}

// ggufTensor is one F32 tensor; Dims are ggml's ne, innermost first, so a
// matrix that maps n_in to n_out values is {n_in, n_out} and Data holds
// n_out rows of n_in values.
type ggufTensor struct {
	Name string
	Dims []uint64
	Data []float32
}

// writeGGUF writes a GGUF v3 file of kvs and tensors to w.
func writeGGUF(w io.Writer, kvs []ggufKV, tensors []ggufTensor) error {
	bw := bufio.NewWriter(w)
	e := &ggufEncoder{w: bw}
	e.raw([]byte("GGUF"))
	e.u32(ggufVersion)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		if err := e.value(kv.Value); err != nil {
			return fmt.Errorf("gguf key %s: %w", kv.Key, err)
		}
	}
	var offset uint64
	for _, t := range tensors {
		n := uint64(1)
		for _, d := range t.Dims {
			n *= d
		}
		if n != uint64(len(t.Data)) {
			return fmt.Errorf("gguf tensor %s: dims %v hold %d values, data has %d", t.Name, t.Dims, n, len(t.Data))
		}
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(ggmlF32)
		e.u64(offset)
		offset += pad(4 * n)
	}
	e.raw(make([]byte, pad(e.n)-e.n))
	for _, t := range tensors {
		for _, v := range t.Data {
			e.u32(math.Float32bits(v))
		}
		size := 4 * uint64(len(t.Data))
		e.raw(make([]byte, pad(size)-size))
	}
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

func pad(n uint64) uint64 { return (n + ggufAlignment - 1) / ggufAlignment * ggufAlignment }

// ggufEncoder writes little-endian values and counts the bytes written; the
// first error sticks.
type ggufEncoder struct {
	w   io.Writer
	n   uint64
	err error
}

func (e *ggufEncoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	var k int
	k, e.err = e.w.Write(b)
	e.n += uint64(k)
}

func (e *ggufEncoder) u32(v uint32) { e.raw(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *ggufEncoder) u64(v uint64) { e.raw(binary.LittleEndian.AppendUint64(nil, v)) }

func (e *ggufEncoder) str(s string) {
	e.u64(uint64(len(s)))
	e.raw([]byte(s))
}

func (e *ggufEncoder) value(v any) error {
	switch v := v.(type) {
	case uint32:
		e.u32(ggufUint32)
		e.u32(v)
	case int32:
		e.u32(ggufInt32)
		e.u32(uint32(v))
	case float32:
		e.u32(ggufFloat32)
		e.u32(math.Float32bits(v))
	case bool:
		e.u32(ggufBool)
		if v {
			e.raw([]byte{1})
		} else {
			e.raw([]byte{0})
		}
	case string:
		e.u32(ggufString)
		e.str(v)
	case []string:
		e.u32(ggufArray)
		e.u32(ggufString)
		e.u64(uint64(len(v)))
		for _, s := range v {
			e.str(s)
		}
	case []float32:
		e.u32(ggufArray)
		e.u32(ggufFloat32)
		e.u64(uint64(len(v)))
		for _, f := range v {
			e.u32(math.Float32bits(f))
		}
	case []int32:
		e.u32(ggufArray)
		e.u32(ggufInt32)
		e.u64(uint64(len(v)))
		for _, x := range v {
			e.u32(uint32(x))
		}
	default:
		return fmt.Errorf("unsupported value type %T", v)
	}
	return nil
}
