package tinylm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"

	"github.com/selfplay/selfplay/internal/atomicfile"
)

// The weights file format (version 1) is a gzip stream of:
//
//	magic    8 bytes  "TINYLM\x00\x01"
//	V        uint32   vocabulary size (little endian, like every number below)
//	Dim      uint32   embedding dimension
//	words    V × (uint16 byte length, UTF-8 bytes), in id order; the first
//	         NumSpecial are the special tokens
//	B        V float64
//	U, E, F  V·Dim float64 each, row-major
//
// Parameters are stored as float64, so Save followed by Load gives back the
// very same model.
var weightsMagic = [8]byte{'T', 'I', 'N', 'Y', 'L', 'M', 0, 1}

// maxVocab and maxDim bound what Load accepts, so a corrupt header cannot
// make it allocate gigabytes.
const (
	maxVocab = 1 << 20
	maxDim   = 1024
)

//go:embed weights/tiny-0.bin.gz
var builtinWeights []byte

var builtinModel = sync.OnceValues(func() (*Model, error) {
	return Decode(bytes.NewReader(builtinWeights))
})

// Builtin returns a fresh copy of the embedded initial model (tiny-0), so
// callers may train it in place. It panics if the embedded file is corrupt,
// which the package tests rule out.
func Builtin() *Model {
	m, err := builtinModel()
	if err != nil {
		panic(fmt.Sprintf("tinylm: embedded weights: %v", err))
	}
	return m.Clone()
}

// Load reads a model from a weights file written by Save. The path
// "builtin" is not special here; see LoadSpec.
func Load(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	defer f.Close()
	m, err := Decode(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return m, nil
}

// LoadSpec loads "builtin" as the embedded model and anything else as a
// weights file path.
func LoadSpec(spec string) (*Model, error) {
	if spec == "builtin" {
		return Builtin(), nil
	}
	return Load(spec)
}

// Save writes the model to path atomically (a temporary file in the same
// directory, then a rename).
func (m *Model) Save(path string) error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := atomicfile.Write(path, m.Encode); err != nil {
		return fmt.Errorf("save model %s: %w", path, err)
	}
	return nil
}

// Encode writes the model in the weights file format to w.
func (m *Model) Encode(w io.Writer) error {
	if err := m.validate(); err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(zw)
	bw.Write(weightsMagic[:])
	var buf [8]byte
	binary.LittleEndian.PutUint32(buf[:4], uint32(m.V()))
	bw.Write(buf[:4])
	binary.LittleEndian.PutUint32(buf[:4], uint32(m.Dim))
	bw.Write(buf[:4])
	for _, word := range m.Tok.words {
		binary.LittleEndian.PutUint16(buf[:2], uint16(len(word)))
		bw.Write(buf[:2])
		bw.WriteString(word)
	}
	for _, s := range [][]float64{m.B, m.U, m.E, m.F} {
		for _, x := range s {
			binary.LittleEndian.PutUint64(buf[:], math.Float64bits(x))
			bw.Write(buf[:])
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

// Decode reads a model in the weights file format.
func Decode(r io.Reader) (*Model, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a gzip weights file: %w", err)
	}
	br := bufio.NewReader(zr)
	var magic [8]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if magic != weightsMagic {
		return nil, errors.New("not a tinylm weights file (bad magic) or an unsupported version")
	}
	var hdr [8]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	v := int(binary.LittleEndian.Uint32(hdr[:4]))
	dim := int(binary.LittleEndian.Uint32(hdr[4:]))
	if v <= NumSpecial || v > maxVocab || dim < 1 || dim > maxDim {
		return nil, fmt.Errorf("bad header: vocabulary %d, dimension %d", v, dim)
	}
	words := make([]string, v)
	for i := range words {
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, fmt.Errorf("read vocabulary: %w", err)
		}
		b := make([]byte, binary.LittleEndian.Uint16(l[:]))
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, fmt.Errorf("read vocabulary: %w", err)
		}
		words[i] = string(b)
	}
	tok, err := NewTokenizer(words)
	if err != nil {
		return nil, err
	}
	m := &Model{Tok: tok, Dim: dim, B: make([]float64, v), U: make([]float64, v*dim), E: make([]float64, v*dim), F: make([]float64, v*dim)}
	var buf [8]byte
	for _, s := range [][]float64{m.B, m.U, m.E, m.F} {
		for i := range s {
			if _, err := io.ReadFull(br, buf[:]); err != nil {
				return nil, fmt.Errorf("read parameters: %w", err)
			}
			s[i] = math.Float64frombits(binary.LittleEndian.Uint64(buf[:]))
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, errors.New("trailing data after the parameters")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}
