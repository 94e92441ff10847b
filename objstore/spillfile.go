package objstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"runtime"

	"github.com/goray/goray/protos"
)

// Spill file format. A spill file is the output of one spill round: a plain
// sequence of records, one per object, written front to back and never
// changed afterwards. There is no file header and no index, because the
// store keeps each record's file and offset in memory and reads a record
// only at an offset it wrote; the per-record header exists to catch a
// record read from the wrong place or changed on disk. A record is
//
//	offset  size  field
//	0       4     magic "GRS1"
//	4       4     CRC-32C (Castagnoli) of the data
//	8       8     data size in bytes, little endian
//	16      20    object id
//	36      4     CRC-32C of bytes [0, 36) of this header, little endian
//	40      size  the object's bytes
//
// and the next record starts right after the data. The data CRC, which is
// only known once the data is written, is filled in by a small positioned
// write over the header after the data, so the data itself streams from the
// segment mapping to the file in one pass with no intermediate buffer: each
// chunk updates the CRC while it is in cache and is then written (records
// of parallelCRCMin or more have their CRC computed by a second goroutine
// instead). A restore reads the data straight into its new block, in
// chunks, each checksummed right after it is read.
const (
	recordMagic      = "GRS1"
	recordHeaderSize = 40

	// spillChunk is the unit of CRC-then-write (and read-then-CRC): small
	// enough that the chunk is still in cache for the second pass, large
	// enough that syscalls cost nothing next to the copy.
	spillChunk = 1 << 20

	// parallelCRCMin is the record size from which the data CRC is
	// computed on a second goroutine alongside the write. CRC-32C runs
	// at about 6.5 GB/s on one core (2-core AMD EPYC VM, SSE4.2), not
	// much faster than a write into the page cache (5 GB/s for a plain
	// write of 64 MiB pieces), so computing it in line costs nearly half
	// the throughput: BenchmarkSpill gave 2.8 GB/s in line (chunk size
	// 256 KiB to 16 MiB made no difference) and 4.2 GB/s in parallel.
	// Below a few MiB the goroutine is not worth starting.
	parallelCRCMin = 4 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// spillWriter appends records to a new spill file.
type spillWriter struct {
	f   *os.File
	pos int64
}

// writeRecord appends one record and returns its offset and data CRC.
func (w *spillWriter) writeRecord(id protos.ObjectID, data []byte) (off int64, crc uint32, err error) {
	off = w.pos
	var hdr [recordHeaderSize]byte
	if _, err := w.f.Write(hdr[:]); err != nil {
		return 0, 0, err
	}
	if len(data) >= parallelCRCMin && runtime.NumCPU() > 1 {
		// The checksum runs on another core, just behind or ahead of
		// the write through the same bytes, so the pair shares the
		// memory traffic and the record costs about a plain write.
		sum := make(chan uint32, 1)
		go func() { sum <- crc32.Checksum(data, castagnoli) }()
		err := writeChunks(w.f, data, nil)
		crc = <-sum
		if err != nil {
			return 0, 0, err
		}
	} else if err := writeChunks(w.f, data, &crc); err != nil {
		return 0, 0, err
	}
	encodeHeader(&hdr, id, uint64(len(data)), crc)
	if _, err := w.f.WriteAt(hdr[:], off); err != nil {
		return 0, 0, err
	}
	w.pos += recordHeaderSize + int64(len(data))
	return off, crc, nil
}

// writeChunks writes data in spillChunk pieces, first updating *crc with
// each piece if crc is not nil, while the piece is still in cache.
func writeChunks(f *os.File, data []byte, crc *uint32) error {
	for len(data) > 0 {
		n := min(len(data), spillChunk)
		if crc != nil {
			*crc = crc32.Update(*crc, castagnoli, data[:n])
		}
		if _, err := f.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func encodeHeader(h *[recordHeaderSize]byte, id protos.ObjectID, size uint64, crc uint32) {
	copy(h[0:4], recordMagic)
	binary.LittleEndian.PutUint32(h[4:8], crc)
	binary.LittleEndian.PutUint64(h[8:16], size)
	copy(h[16:36], id[:])
	binary.LittleEndian.PutUint32(h[36:40], crc32.Checksum(h[:36], castagnoli))
}

// checkHeader says what, if anything, is wrong with a record header read
// back for object id of size bytes with data CRC crc.
func checkHeader(h *[recordHeaderSize]byte, id protos.ObjectID, size uint64, crc uint32) string {
	switch {
	case string(h[0:4]) != recordMagic:
		return fmt.Sprintf("bad magic %q", h[0:4])
	case binary.LittleEndian.Uint32(h[36:40]) != crc32.Checksum(h[:36], castagnoli):
		return "header checksum mismatch"
	case protos.ObjectID(h[16:36]) != id:
		return fmt.Sprintf("record is for object %s", protos.ObjectID(h[16:36]))
	case binary.LittleEndian.Uint64(h[8:16]) != size:
		return fmt.Sprintf("record size %d, want %d", binary.LittleEndian.Uint64(h[8:16]), size)
	case binary.LittleEndian.Uint32(h[4:8]) != crc:
		return "record checksum differs from the one written"
	}
	return ""
}

// readRecord reads the data of object id's record at off in path straight
// into dst (len(dst) is the object's size) and verifies it. A missing file
// is ErrSpillLost; a header or checksum mismatch, or a file too short, is
// ErrSpillCorrupt. Errors name the object, the file and the offset.
func readRecord(path string, off int64, id protos.ObjectID, crc uint32, dst []byte) error {
	fail := func(sentinel error, detail any) error {
		return fmt.Errorf("restore %s from %s at offset %d: %w: %v", id, path, off, sentinel, detail)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fail(ErrSpillLost, err)
	}
	if err != nil {
		return fmt.Errorf("restore %s from %s at offset %d: %w", id, path, off, err)
	}
	defer f.Close()
	var hdr [recordHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		if errors.Is(err, io.EOF) {
			return fail(ErrSpillCorrupt, "file ends inside the header")
		}
		return fmt.Errorf("restore %s from %s at offset %d: %w", id, path, off, err)
	}
	if bad := checkHeader(&hdr, id, uint64(len(dst)), crc); bad != "" {
		return fail(ErrSpillCorrupt, bad)
	}
	var got uint32
	pos := off + recordHeaderSize
	for rest := dst; len(rest) > 0; {
		n := min(len(rest), spillChunk)
		if _, err := f.ReadAt(rest[:n], pos); err != nil {
			if errors.Is(err, io.EOF) {
				return fail(ErrSpillCorrupt, "file ends inside the data")
			}
			return fmt.Errorf("restore %s from %s at offset %d: %w", id, path, off, err)
		}
		got = crc32.Update(got, castagnoli, rest[:n])
		rest, pos = rest[n:], pos+int64(n)
	}
	if got != crc {
		return fail(ErrSpillCorrupt, fmt.Sprintf("data checksum %08x, want %08x", got, crc))
	}
	return nil
}
