package raylet

import (
	"errors"
	"io"
	"os"
	"path/filepath"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Reading workers' log files for `goray logs`, from any machine: the
// client names a worker and where to start; the raylet names the file
// itself (a worker's files are logs/worker-<id>.out and .err under its
// session directory), so no path a peer sends is ever opened.

// maxLogRead bounds one READ_LOG answer; a client wanting more asks again
// from next_offset.
const maxLogRead = 1 << 20

// maxTailLines bounds tail_lines.
const maxTailLines = 100_000

// workerLogPath is where worker id's stdout (or stderr) goes on this node.
func (r *Raylet) workerLogPath(id protos.WorkerID, stderr bool) string {
	ext := ".out"
	if stderr {
		ext = ".err"
	}
	return filepath.Join(r.cfg.SessionDir, "logs", "worker-"+id.Short()+ext)
}

// nodeLogPath is where `goray start` writes this node daemon's own log.
func (r *Raylet) nodeLogPath() string {
	name := "goray-node.log"
	if r.cfg.IsHead {
		name = "goray-head.log"
	}
	return filepath.Join(r.cfg.SessionDir, "logs", name)
}

func (r *Raylet) readLog(m *protos.ReadLogRequest) (*protos.ReadLogReply, error) {
	if n := m.GetTailLines(); n < 0 || n > maxTailLines {
		return nil, RequestError(protos.Method_READ_LOG, invalidFieldf("tail_lines", "%d: want 0 to %d", n, maxTailLines))
	}
	var path, what string
	if m.GetNode() {
		path, what = r.nodeLogPath(), "node "+r.cfg.NodeID.Short()
	} else {
		id, err := parseID("worker_id", m.GetWorkerId())
		if err != nil {
			return nil, RequestError(protos.Method_READ_LOG, err)
		}
		path, what = r.workerLogPath(id, m.GetStderr()), "worker "+id.Short()
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if m.GetNode() {
			return nil, wire.NewError("not_found", "node %s keeps no log of its own (a node started in the foreground writes to its terminal)", r.cfg.NodeID.Short())
		}
		return nil, wire.NewError("not_found", "%s has no log on node %s", what, r.cfg.NodeID.Short())
	}
	if err != nil {
		return nil, wire.NewError("unavailable", "%s's log: %v", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, wire.NewError("unavailable", "%s's log: %v", what, err)
	}
	size := fi.Size()
	start := m.GetOffset()
	if start < 0 {
		start = tailStart(f, size, int(m.GetTailLines()))
	}
	if start > size {
		// The file was rotated: start over in the new one.
		start = 0
	}
	n := min(size-start, maxLogRead)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, wire.NewError("unavailable", "%s's log: %v", what, err)
	}
	return &protos.ReadLogReply{Data: buf, NextOffset: start + n, Path: path}, nil
}

// tailStart is the offset of the last lines lines of f (of size bytes),
// reading backwards in blocks.
func tailStart(f *os.File, size int64, lines int) int64 {
	if lines <= 0 {
		return size
	}
	const block = 64 << 10
	end := size
	// A last line ending in a newline does not count as a break.
	seen := -1
	for end > 0 {
		begin := max(0, end-block)
		buf := make([]byte, end-begin)
		if _, err := f.ReadAt(buf, begin); err != nil && !errors.Is(err, io.EOF) {
			return 0
		}
		for i := len(buf) - 1; i >= 0; i-- {
			if buf[i] != '\n' {
				continue
			}
			if seen++; seen == lines {
				return begin + int64(i) + 1
			}
		}
		end = begin
		if size-end > maxLogRead {
			return end
		}
	}
	return 0
}
