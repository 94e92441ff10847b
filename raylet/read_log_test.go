package raylet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

func TestReadLog(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Raylet{cfg: Config{SessionDir: dir, NodeID: protos.NewUniqueID()}}
	id := protos.NewUniqueID()
	var b strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(r.workerLogPath(id, false), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := r.readLog(&protos.ReadLogRequest{WorkerId: id.Bytes(), Offset: -1, TailLines: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(rep.GetData()); got != "line 99997\nline 99998\nline 99999\n" || rep.GetNextOffset() != int64(b.Len()) {
		t.Errorf("tail 3: %q, next %d of %d", got, rep.GetNextOffset(), b.Len())
	}
	// From an offset, at most maxLogRead at a time, to the end.
	var all []byte
	for off := int64(0); off < int64(b.Len()); {
		rep, err := r.readLog(&protos.ReadLogRequest{WorkerId: id.Bytes(), Offset: off})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.GetData()) > maxLogRead || len(rep.GetData()) == 0 {
			t.Fatalf("a read of %d bytes", len(rep.GetData()))
		}
		all, off = append(all, rep.GetData()...), rep.GetNextOffset()
	}
	if string(all) != b.String() {
		t.Error("reading from offsets did not give the file")
	}
	// Past the end (a rotated file): from the start of the new one.
	if rep, err := r.readLog(&protos.ReadLogRequest{WorkerId: id.Bytes(), Offset: int64(b.Len()) + 10}); err != nil || !strings.HasPrefix(string(rep.GetData()), "line 0\n") {
		t.Errorf("offset past the end: %v", err)
	}
	var re *wire.RemoteError
	if _, err := r.readLog(&protos.ReadLogRequest{WorkerId: protos.NewUniqueID().Bytes()}); !errors.As(err, &re) || re.Code != "not_found" {
		t.Errorf("an unknown worker: %v", err)
	}
	if _, err := r.readLog(&protos.ReadLogRequest{WorkerId: id.Bytes(), TailLines: -2}); err == nil {
		t.Error("negative tail_lines accepted")
	}
	if _, err := r.readLog(&protos.ReadLogRequest{WorkerId: []byte("../../etc/passwd")}); err == nil {
		t.Error("a worker id that is not an id was accepted")
	}
}
