package taskevents

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/goray/goray/protos"
)

// Event is one transition of one task attempt. Name and Function are set
// on the owner's first event of an attempt (the task's description comes
// with it); RunMicros and the error fields on FINISHED and FAILED.
type Event struct {
	TaskID    protos.UniqueID
	Parent    protos.UniqueID
	Actor     protos.UniqueID
	Time      int64 // Unix nanoseconds; Record sets it when 0
	Attempt   int32
	State     protos.TaskState
	Type      protos.TaskType
	ErrorKind protos.ErrorKind
	Name      string
	Function  string
	ErrorMsg  string
	RunMicros uint64
	// Where ran the attempt, as its owner knows it (FINISHED, FAILED).
	Where *protos.Address
	// EndState and EndTime are set when End folded an attempt's end into
	// its first event (still buffered): one buffered event, published as
	// two.
	EndState protos.TaskState
	EndTime  int64
}

// Handle names a buffered event, for End. The zero Handle names none.
type Handle struct {
	gen uint64
	idx int
}

// Defaults. Ray's workers send at most task_events_send_batch_size
// (10,000) events a second each; so does a Recorder flushed every second.
const (
	// DefaultBufferEvents bounds what a process holds between flushes:
	// beyond it events are dropped and counted, so a process running
	// tasks faster than it can report them spends no more on it (an
	// attempt that starts and ends between two flushes is one event).
	DefaultBufferEvents = 10_000
	// DefaultBatchEvents bounds one published message.
	DefaultBatchEvents = 10_000
	// maxErrorMessage bounds an error message (with its stack) carried by
	// an event; the whole error stays with the task's result.
	maxErrorMessage = 4096
)

// Config describes the producing process.
type Config struct {
	Job    protos.UniqueID
	Worker protos.UniqueID
	PID    int32
	// BufferEvents and BatchEvents: 0 means the default.
	BufferEvents int
	BatchEvents  int
}

// Recorder buffers a process's events between flushes. It is safe for
// concurrent use.
type Recorder struct {
	cfg Config
	// start and startUnix turn the monotonic clock into Unix time (now).
	start     time.Time
	startUnix int64

	// full is set while the buffer is full, so that dropping an event
	// costs two atomic operations and no clock read or lock: a process
	// running tasks faster than it may report them pays almost nothing
	// for the ones it drops.
	// Record and End run on different goroutines (a task's submitter and
	// its reply's reader), so each counts its drops on a cache line of
	// its own.
	full        atomic.Bool
	_           [56]byte
	dropped     atomic.Uint64
	_           [56]byte
	droppedEnds atomic.Uint64
	_           [56]byte

	mu    sync.Mutex
	buf   []Event
	spare []Event
	gen   uint64 // counts flushes; Handles of earlier ones are stale
	sent  uint64
}

// NewRecorder returns a Recorder for the process cfg describes.
func NewRecorder(cfg Config) *Recorder {
	if cfg.BufferEvents <= 0 {
		cfg.BufferEvents = DefaultBufferEvents
	}
	if cfg.BatchEvents <= 0 {
		cfg.BatchEvents = DefaultBatchEvents
	}
	now := time.Now()
	return &Recorder{cfg: cfg, start: now, startUnix: now.UnixNano()}
}

// now reads the clock: the monotonic clock only, which costs half what
// time.Now does.
func (r *Recorder) now() int64 { return r.startUnix + int64(time.Since(r.start)) }

// Record buffers e, or counts it dropped when the buffer is full, and
// returns a Handle End can fold the attempt's end into. A nil Recorder
// records nothing, so callers need not check whether events are on.
func (r *Recorder) Record(e Event) Handle {
	if r == nil {
		return Handle{}
	}
	if r.full.Load() {
		r.dropped.Add(1)
		return Handle{}
	}
	if e.Time == 0 {
		e.Time = r.now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) >= r.cfg.BufferEvents {
		r.full.Store(true)
		r.dropped.Add(1)
		return Handle{}
	}
	r.buf = append(r.buf, e)
	return Handle{gen: r.gen + 1, idx: len(r.buf) - 1}
}

// End records an attempt's end (FINISHED or FAILED, with its run time,
// where it ran and its error). When h names the attempt's first event and
// that is still buffered, the end is folded into it: most tasks start and
// end between two flushes, and then cost one buffered event, not two.
func (r *Recorder) End(h Handle, e Event) {
	if r == nil {
		return
	}
	if h == (Handle{}) && r.full.Load() {
		r.droppedEnds.Add(1)
		return
	}
	if e.Time == 0 {
		e.Time = r.now()
	}
	r.mu.Lock()
	if h.gen == r.gen+1 && h.idx < len(r.buf) {
		if first := &r.buf[h.idx]; first.TaskID == e.TaskID && first.Attempt == e.Attempt && first.EndState == 0 {
			first.EndState, first.EndTime = e.State, e.Time
			first.RunMicros, first.Where, first.ErrorKind, first.ErrorMsg = e.RunMicros, e.Where, e.ErrorKind, e.ErrorMsg
			r.mu.Unlock()
			return
		}
	}
	r.mu.Unlock()
	r.Record(e)
}

// Flush takes what was recorded and returns it encoded as TaskEventBatch
// messages of at most BatchEvents buffered events each (none when nothing
// was recorded). node is the process's node now. One goroutine flushes. The events are counted sent:
// a message that then fails to go out is lost like one the stream dropped,
// and readers count it so.
func (r *Recorder) Flush(node protos.UniqueID) [][]byte {
	r.mu.Lock()
	events := r.buf
	r.buf, r.spare = r.spare[:0], nil
	r.gen++
	r.full.Store(false)
	dropped, sentBefore := r.Dropped(), r.sent
	r.mu.Unlock()
	all := events
	defer r.giveBack(all)
	if len(events) == 0 {
		return nil
	}
	var out [][]byte
	for len(events) > 0 {
		n := min(len(events), r.cfg.BatchEvents)
		h := header{job: r.cfg.Job, worker: r.cfg.Worker, node: node, pid: r.cfg.PID, sentBefore: sentBefore, dropped: dropped}
		msg, published := encodeBatch(h, events[:n])
		out = append(out, msg)
		sentBefore += uint64(published)
		events = events[n:]
	}
	r.mu.Lock()
	r.sent = sentBefore
	r.mu.Unlock()
	return out
}

// giveBack keeps a flushed buffer for the next round, so that steady
// recording does not allocate.
func (r *Recorder) giveBack(events []Event) {
	clear(events) // drop the strings it references
	r.mu.Lock()
	if r.spare == nil {
		r.spare = events[:0]
	}
	r.mu.Unlock()
}

// Dropped is how many events were dropped because the buffer was full.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() + r.droppedEnds.Load() }
