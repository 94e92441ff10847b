package taskevents

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/goray/goray/protos"
)

// The encoder writes TaskEventBatch's wire format directly: a flush of a
// full buffer encodes 100,000 events, and building a message per event
// for proto.Marshal would cost an allocation each. The field numbers are
// task_events.proto's; TestEncodeMatchesProto decodes the output with the
// generated types.

type header struct {
	job, worker, node   protos.UniqueID
	pid                 int32
	sentBefore, dropped uint64
}

// Field numbers of TaskEventBatch and TaskEvent.
const (
	batchJob        = 1
	batchWorker     = 2
	batchNode       = 3
	batchPID        = 4
	batchSentBefore = 5
	batchDropped    = 6
	batchEvents     = 7
	batchStrings    = 8

	evTaskID    = 1
	evAttempt   = 2
	evState     = 3
	evTime      = 4
	evName      = 5
	evFunction  = 6
	evType      = 7
	evActor     = 8
	evParent    = 9
	evRunMicros = 10
	evErrorType = 11
	evErrorMsg  = 12
	evNode      = 13
	evWorker    = 14
	evPID       = 15
)

// encodeBatch encodes a batch and says how many TaskEvents it holds (an
// event with its end folded in is two).
func encodeBatch(h header, events []Event) ([]byte, int) {
	b := make([]byte, 0, 64+len(events)*40)
	b = appendBytes(b, batchJob, h.job[:])
	b = appendBytes(b, batchWorker, h.worker[:])
	if !h.node.IsZero() {
		b = appendBytes(b, batchNode, h.node[:])
	}
	b = appendVarint(b, batchPID, uint64(int64(h.pid)))
	b = appendVarint(b, batchSentBefore, h.sentBefore)
	b = appendVarint(b, batchDropped, h.dropped)
	strs := map[string]uint32{}
	var table []string
	// Most events of a batch name the same few functions: the last one
	// looked up saves most map lookups.
	var lastStr string
	var lastIdx uint32
	intern := func(s string) uint64 {
		if s == "" {
			return 0
		}
		if s == lastStr && lastIdx != 0 {
			return uint64(lastIdx)
		}
		i, ok := strs[s]
		if !ok {
			table = append(table, s)
			i = uint32(len(table))
			strs[s] = i
		}
		lastStr, lastIdx = s, i
		return uint64(i)
	}
	var ev []byte
	published := len(events)
	for i := range events {
		e := &events[i]
		if e.EndState != 0 {
			// An attempt's first event with its end folded in: the
			// first, then the end.
			first := *e
			first.EndState, first.RunMicros, first.Where, first.ErrorKind, first.ErrorMsg = 0, 0, nil, 0, ""
			ev = appendEvent(ev[:0], &first, intern)
			b = appendBytes(b, batchEvents, ev)
			end := Event{TaskID: e.TaskID, Attempt: e.Attempt, State: e.EndState, Time: e.EndTime, RunMicros: e.RunMicros,
				Where: e.Where, ErrorKind: e.ErrorKind, ErrorMsg: e.ErrorMsg}
			ev = appendEvent(ev[:0], &end, intern)
			b = appendBytes(b, batchEvents, ev)
			published++
			continue
		}
		ev = appendEvent(ev[:0], e, intern)
		b = appendBytes(b, batchEvents, ev)
	}
	for _, s := range table {
		b = appendString(b, batchStrings, s)
	}
	return b, published
}

// appendEvent appends e's TaskEvent fields to ev.
func appendEvent(ev []byte, e *Event, intern func(string) uint64) []byte {
	ev = appendBytes(ev, evTaskID, e.TaskID[:])
	ev = appendVarint(ev, evAttempt, uint64(int64(e.Attempt)))
	ev = appendVarint(ev, evState, uint64(e.State))
	ev = protowire.AppendTag(ev, evTime, protowire.Fixed64Type)
	ev = protowire.AppendFixed64(ev, uint64(e.Time))
	if e.Function != "" {
		ev = appendVarint(ev, evName, intern(e.Name))
		ev = appendVarint(ev, evFunction, intern(e.Function))
		ev = appendVarint(ev, evType, uint64(e.Type))
		if !e.Actor.IsZero() {
			ev = appendBytes(ev, evActor, e.Actor[:])
		}
		if !e.Parent.IsZero() {
			ev = appendBytes(ev, evParent, e.Parent[:])
		}
	}
	ev = appendVarint(ev, evRunMicros, e.RunMicros)
	if e.ErrorKind != protos.ErrorKind_ERROR_KIND_UNSPECIFIED {
		ev = appendString(ev, evErrorType, errorType(e.ErrorKind))
	}
	if e.ErrorMsg != "" {
		ev = appendString(ev, evErrorMsg, truncate(e.ErrorMsg, maxErrorMessage))
	}
	if w := e.Where; w != nil {
		ev = appendBytes(ev, evNode, w.GetNodeId())
		ev = appendBytes(ev, evWorker, w.GetWorkerId())
		ev = appendVarint(ev, evPID, uint64(int64(w.GetPid())))
	}
	return ev
}

// errorType names an error kind without its ERROR_KIND_ prefix, as the
// state API shows it (TASK, WORKER_CRASHED, ...).
func errorType(k protos.ErrorKind) string {
	const prefix = "ERROR_KIND_"
	s := k.String()
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b // proto3: a zero scalar is not written
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}
