package objstore

import (
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

func TestSpillRecordRoundTrip(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "records"))
	if err != nil {
		t.Fatal(err)
	}
	w := spillWriter{f: f}
	// Sizes around the chunk size check the chunk loops' edges.
	sizes := []int{0, 1, 4095, spillChunk - 1, spillChunk, 2*spillChunk + 17}
	type rec struct {
		off int64
		crc uint32
	}
	var recs []rec
	for i, n := range sizes {
		off, crc, err := w.writeRecord(oid(uint32(i)), pattern(n, byte(i)))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec{off, crc})
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		dst := make([]byte, n)
		if err := readRecord(f.Name(), recs[i].off, oid(uint32(i)), recs[i].crc, dst); err != nil {
			t.Fatal(err)
		}
		if err := checkFill(dst, byte(i)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	// A record read as another object, or with another size, is refused.
	if err := readRecord(f.Name(), recs[2].off, oid(9), recs[2].crc, make([]byte, sizes[2])); !errors.Is(err, ErrSpillCorrupt) {
		t.Fatalf("wrong id: %v", err)
	}
	if err := readRecord(f.Name(), recs[2].off, oid(2), recs[2].crc, make([]byte, sizes[2]+1)); !errors.Is(err, ErrSpillCorrupt) {
		t.Fatalf("wrong size: %v", err)
	}
	if err := readRecord(f.Name(), recs[2].off+1, oid(2), recs[2].crc, make([]byte, sizes[2])); !errors.Is(err, ErrSpillCorrupt) {
		t.Fatalf("wrong offset: %v", err)
	}
}

// spillBenchSize is written per iteration as four records from a segment,
// as a spill round would; the file system is that of the test's temp dir.
const spillBenchSize = 256 << 20

func spillBenchSetup(b *testing.B) (*Segment, string) {
	seg := newSegment(b, spillBenchSize)
	fill(seg.Slice(0, spillBenchSize), 1)
	return seg, b.TempDir()
}

func writeBenchFile(b *testing.B, seg *Segment, path string) []int64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := spillWriter{f: f}
	const n = 4
	var offs []int64
	for i := range uint64(n) {
		off, _, err := w.writeRecord(oid(uint32(i)), seg.Slice(i*spillBenchSize/n, spillBenchSize/n))
		if err != nil {
			b.Fatal(err)
		}
		offs = append(offs, off)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return offs
}

func BenchmarkSpill(b *testing.B) {
	seg, dir := spillBenchSetup(b)
	path := filepath.Join(dir, "spill")
	b.SetBytes(spillBenchSize)
	for b.Loop() {
		writeBenchFile(b, seg, path)
		b.StopTimer()
		if err := os.Remove(path); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func BenchmarkRestore(b *testing.B) {
	seg, dir := spillBenchSetup(b)
	path := filepath.Join(dir, "spill")
	offs := writeBenchFile(b, seg, path)
	// Restore into the same warm segment pages the data came from; the
	// bytes read back are identical, so the checksums hold.
	crcs := make([]uint32, len(offs))
	for i := range offs {
		data := seg.Slice(uint64(i)*spillBenchSize/4, spillBenchSize/4)
		crcs[i] = crc32.Checksum(data, castagnoli)
	}
	b.SetBytes(spillBenchSize)
	for b.Loop() {
		for i, off := range offs {
			dst := seg.Slice(uint64(i)*spillBenchSize/4, spillBenchSize/4)
			if err := readRecord(path, off, oid(uint32(i)), crcs[i], dst); err != nil {
				b.Fatal(err)
			}
		}
	}
}
