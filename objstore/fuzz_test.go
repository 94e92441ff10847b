package objstore

import (
	"bytes"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/goray/goray/protos"
)

// A record, as writeRecord lays it out, for the references below.
func refRecord(id protos.ObjectID, data []byte) []byte {
	var h [recordHeaderSize]byte
	encodeHeader(&h, id, uint64(len(data)), crc32.Checksum(data, castagnoli))
	return append(h[:], data...)
}

// refRead says whether readRecord must accept file's record at off for
// object id of size bytes with data CRC crc, by the format in spillfile.go:
// the 40 header bytes are exactly what writeRecord wrote for them, and the
// size bytes after them have that CRC.
func refRead(file []byte, off int64, id protos.ObjectID, size int, crc uint32) bool {
	var h [recordHeaderSize]byte
	encodeHeader(&h, id, uint64(size), crc)
	end := off + recordHeaderSize + int64(size)
	return end <= int64(len(file)) &&
		bytes.Equal(file[off:off+recordHeaderSize], h[:]) &&
		crc32.Checksum(file[off+recordHeaderSize:end], castagnoli) == crc
}

// FuzzReadRecord reads a record out of arbitrary file contents. It must
// succeed exactly when the file holds the record the store wrote, and
// otherwise fail with ErrSpillCorrupt: the file is there, whatever is in it.
func FuzzReadRecord(f *testing.F) {
	a, b := pattern(1000, 1), pattern(3, 2)
	crcA, crcB := crc32.Checksum(a, castagnoli), crc32.Checksum(b, castagnoli)
	file := append(refRecord(oid(1), a), refRecord(oid(2), b)...)
	f.Add(file, uint16(0), uint16(len(a)), crcA)
	f.Add(file, uint16(recordHeaderSize+len(a)), uint16(len(b)), crcB)
	f.Add(file, uint16(recordHeaderSize+len(a)), uint16(len(b)+1), crcB) // another size
	f.Add(file, uint16(1), uint16(len(a)), crcA)                         // another offset
	f.Add(file, uint16(0), uint16(len(a)), crcB)                         // another CRC
	f.Add(file[:recordHeaderSize-1], uint16(0), uint16(len(a)), crcA)    // ends in the header
	f.Add(file[:recordHeaderSize+10], uint16(0), uint16(len(a)), crcA)   // ends in the data
	f.Add(refRecord(oid(1), nil), uint16(0), uint16(0), uint32(0))
	f.Add([]byte{}, uint16(0), uint16(0), uint32(0))
	f.Add(bytes.Repeat([]byte("GRS1"), 20), uint16(0), uint16(40), uint32(0))
	path := filepath.Join(f.TempDir(), "spill")
	f.Fuzz(func(t *testing.T, file []byte, off, size uint16, crc uint32) {
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		dst := make([]byte, size)
		err := readRecord(path, int64(off), oid(1), crc, dst)
		if !refRead(file, int64(off), oid(1), int(size), crc) {
			if !errors.Is(err, ErrSpillCorrupt) {
				t.Fatalf("readRecord of a record the store did not write: %v, want ErrSpillCorrupt", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("readRecord of a record as written: %v", err)
		}
		if start := int(off) + recordHeaderSize; !bytes.Equal(dst, file[start:start+int(size)]) {
			t.Fatal("readRecord returned other bytes than the record's")
		}
	})
}

// Objects of the spill file FuzzRestore damages: two small ones spilled
// together to make room for a third.
const (
	fuzzSizeA   = 1000
	fuzzSizeB   = 3000
	fuzzCap     = 64 << 10
	fuzzSizeBig = fuzzCap - 2<<10
)

// spillTwo makes a store whose objects 1 and 2 (seeds 1 and 2) are in one
// spill file, at offsets 0 and recordHeaderSize+fuzzSizeA, and object 3
// in memory. It returns the store and the file.
func spillTwo(tb testing.TB) (*Store, string) {
	tb.Helper()
	s := newSpillStore(tb, fuzzCap, 0)
	for i, size := range []int{fuzzSizeA, fuzzSizeB, fuzzSizeBig} {
		if err := s.Put(oid(uint32(i+1)), pattern(size, byte(i+1))); err != nil {
			tb.Fatal(err)
		}
	}
	var path string
	for _, o := range s.Objects() {
		if o.ID == oid(1) || o.ID == oid(2) {
			if o.InMemory || (path != "" && o.SpillPath != path) {
				tb.Fatalf("want objects 1 and 2 spilled to one file: %+v", s.Objects())
			}
			path = o.SpillPath
		}
	}
	return s, path
}

// FuzzRestore replaces a spill file with arbitrary bytes and acquires the
// objects spilled in it. An Acquire must restore exactly the record's bytes
// if they are what the store wrote, and otherwise fail with ErrSpillCorrupt
// and leave the store as it was: object spilled, its block freed, nothing
// pinned, and the next Acquire failing the same way.
func FuzzRestore(f *testing.F) {
	file := append(refRecord(oid(1), pattern(fuzzSizeA, 1)), refRecord(oid(2), pattern(fuzzSizeB, 2))...)
	recB := recordHeaderSize + fuzzSizeA
	flipped := func(i int) []byte {
		b := bytes.Clone(file)
		b[i] ^= 0x80
		return b
	}
	f.Add(file)
	f.Add([]byte{})
	f.Add(file[:recordHeaderSize/2])
	f.Add(file[:recB])
	f.Add(file[:len(file)-1])
	f.Add(append(bytes.Clone(file), "trailing"...))
	f.Add(append(bytes.Clone(file[recB:]), file[:recB]...)) // records swapped
	f.Add(flipped(0))                                       // magic
	f.Add(flipped(8))                                       // size
	f.Add(flipped(recB + 20))                               // id
	f.Add(flipped(recB + recordHeaderSize + 7))             // data
	f.Fuzz(func(t *testing.T, damaged []byte) {
		s, path := spillTwo(t)
		if written, err := os.ReadFile(path); err != nil || !bytes.Equal(written, file) {
			t.Fatalf("the spill file is not the two records expected (%v)", err)
		}
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		before := s.Stats()
		h := s.NewHolder()
		for i, rec := range []struct {
			off  int64
			size int
		}{{0, fuzzSizeA}, {int64(recB), fuzzSizeB}} {
			id := oid(uint32(i + 1))
			want := pattern(rec.size, byte(i+1))
			ok := refRead(damaged, rec.off, id, rec.size, crc32.Checksum(want, castagnoli))
			off, size, err := s.Acquire(id, h)
			if ok {
				if err != nil {
					t.Fatalf("object %d: restore from its record as written: %v", i+1, err)
				}
				start := rec.off + recordHeaderSize
				if size != uint64(rec.size) || !bytes.Equal(s.Segment().Slice(off, size), damaged[start:start+int64(rec.size)]) {
					t.Fatalf("object %d restored as %d bytes other than its record's", i+1, size)
				}
				s.Release(id, h)
				continue
			}
			for attempt := 0; attempt < 2; attempt++ {
				if !errors.Is(err, ErrSpillCorrupt) {
					t.Fatalf("object %d, attempt %d: restore from a damaged record: %v, want ErrSpillCorrupt", i+1, attempt, err)
				}
				_, _, err = s.Acquire(id, h)
			}
			if o := objectInfo(t, s, id); o.InMemory || !o.Spilled || o.Pins != 0 {
				t.Fatalf("object %d after failed restores: %+v", i+1, o)
			}
		}
		// Failed restores freed their blocks; successful ones may have
		// spilled others to make room. Either way the books balance.
		var used uint64
		spilled := 0
		for _, o := range s.Objects() {
			switch {
			case o.InMemory:
				used += BlockSize(o.Size)
			case o.Spilled:
				spilled++
			}
		}
		if st := s.Stats(); st.Used != used || st.NumSpilled != spilled || st.Pinned != 0 || st.NumPinned != 0 ||
			st.NumObjects != before.NumObjects || st.NumDeleting != 0 {
			t.Fatalf("stats after restores: %+v (before %+v); the table has %d bytes in memory and %d objects only on disk", st, before, used, spilled)
		}
	})
}

// TestReadRecordIgnoresDeclaredSize checks that a header claiming a huge
// object costs readRecord nothing: the size it trusts is the store's, and
// the bytes go into the caller's block.
func TestReadRecordIgnoresDeclaredSize(t *testing.T) {
	var h [recordHeaderSize]byte
	encodeHeader(&h, oid(1), 1<<62, 0)
	path := filepath.Join(t.TempDir(), "spill")
	if err := os.WriteFile(path, h[:], 0o600); err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 10)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := readRecord(path, 0, oid(1), 0, dst)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrSpillCorrupt) {
		t.Fatalf("readRecord: %v, want ErrSpillCorrupt", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Fatalf("reading a header that declares %d bytes allocated %d bytes", uint64(1)<<62, n)
	}
}
