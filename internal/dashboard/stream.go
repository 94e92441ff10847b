package dashboard

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The live pages: a browser opens /api/stream?topics=a,b (server-sent
// events) and gets each topic's value at once and again whenever it
// changes. One poller reads every topic some open stream wants, once per
// interval, and only while a stream is open: the head's cost is per
// interval and topic, not per browser.

// Stream bounds.
const (
	maxStreamTopics = 8
	maxStreams      = 64
	streamBuffer    = 32
	heartbeat       = 15 * time.Second
)

type event struct {
	topic string
	data  []byte
}

type subscriber struct {
	topics []string
	ch     chan event
	// sent holds the digest of what each topic last sent, so a value
	// that did not change is not sent again.
	sent map[string][32]byte
	// gone is closed when the hub drops a subscriber too slow to read.
	gone chan struct{}
}

type hub struct {
	s     *Server
	every time.Duration

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	polling bool
	closed  bool // no poller starts after close
	wake    chan struct{}
}

// close keeps pollers from starting, so Shutdown can wait for the one
// running.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

func newHub(s *Server, every time.Duration) *hub {
	return &hub{s: s, every: every, subs: map[*subscriber]struct{}{}, wake: make(chan struct{}, 1)}
}

// join adds a subscriber and starts the poller if it was idle.
func (h *hub) join(topics []string) (*subscriber, error) {
	sub := &subscriber{topics: topics, ch: make(chan event, streamBuffer), sent: map[string][32]byte{}, gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("%w: the dashboard is shutting down", errBadRequest)
	}
	if len(h.subs) >= maxStreams {
		return nil, fmt.Errorf("%w: %d streams are open already", errBadRequest, maxStreams)
	}
	h.subs[sub] = struct{}{}
	if !h.polling {
		h.polling = true
		h.s.wg.Go(h.poll)
	}
	select {
	case h.wake <- struct{}{}: // the newcomer gets its values now
	default:
	}
	return sub, nil
}

func (h *hub) leave(sub *subscriber) {
	h.mu.Lock()
	delete(h.subs, sub)
	h.mu.Unlock()
}

// poll runs while some stream is open.
func (h *hub) poll() {
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		h.mu.Lock()
		if len(h.subs) == 0 {
			h.polling = false
			h.mu.Unlock()
			return
		}
		want := map[string]bool{}
		for sub := range h.subs {
			for _, tp := range sub.topics {
				want[tp] = true
			}
		}
		h.mu.Unlock()
		values := map[string][]byte{}
		for tp := range want {
			values[tp] = h.read(tp)
		}
		h.mu.Lock()
		for sub := range h.subs {
			h.deliver(sub, values)
		}
		h.mu.Unlock()
		select {
		case <-h.s.ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
		}
	}
}

// read encodes a topic's value, or its error as {"error": ...}.
func (h *hub) read(tp string) []byte {
	ctx, cancel := context.WithTimeout(h.s.ctx, apiTimeout)
	defer cancel()
	v, err := h.s.topic(ctx, tp)
	if err != nil {
		v = apiError{Error: err.Error()}
	}
	data, err := json.Marshal(v)
	if err != nil {
		data, _ = json.Marshal(apiError{Error: err.Error()})
	}
	return data
}

// deliver queues what changed for sub; a subscriber whose queue is full
// is dropped (its browser reconnects and starts over).
func (h *hub) deliver(sub *subscriber, values map[string][]byte) {
	for _, tp := range sub.topics {
		data := values[tp]
		sum := sha256.Sum256(data)
		if sub.sent[tp] == sum {
			continue
		}
		select {
		case sub.ch <- event{topic: tp, data: data}:
			sub.sent[tp] = sum
		default:
			delete(h.subs, sub)
			close(sub.gone)
			return
		}
	}
}

// apiStream serves /api/stream?topics=a,b as server-sent events: "event:
// <topic>", "data: <the topic's JSON>".
func (s *Server) apiStream(w http.ResponseWriter, r *http.Request) {
	var topics []string
	for _, tp := range strings.Split(r.URL.Query().Get("topics"), ",") {
		if tp = strings.TrimSpace(tp); tp == "" {
			continue
		}
		if !knownTopic(tp) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("no topic %q (topics: overview, nodes, jobs, actors, placement-groups, objects, workers, history, tasks:<job id prefix>)", tp))
			return
		}
		topics = append(topics, tp)
	}
	if len(topics) == 0 || len(topics) > maxStreamTopics {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("give 1 to %d topics: /api/stream?topics=overview,nodes", maxStreamTopics))
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported here")
		return
	}
	sub, err := s.hub.join(topics)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer s.hub.leave(sub)
	sseHeaders(w)
	flusher.Flush()
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.gone:
			return
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case ev := <-sub.ch:
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.topic, ev.data); err != nil {
				return
			}
		}
		flusher.Flush()
	}
}

func sseHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

// sseWriter turns what a job's log follower writes into "log" events,
// each chunk a JSON string.
type sseWriter struct {
	w       http.ResponseWriter
	flusher http.Flusher
}

func (s sseWriter) Write(p []byte) (int, error) {
	data, _ := json.Marshal(string(p))
	if _, err := fmt.Fprintf(s.w, "event: log\ndata: %s\n\n", data); err != nil {
		return 0, err
	}
	s.flusher.Flush()
	return len(p), nil
}

// followJobLogs streams a submission's output as it comes ("log" events),
// then an "end" event with the job's final record.
func (s *Server) followJobLogs(w http.ResponseWriter, r *http.Request, id string) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported here")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	_, err := s.opts.Jobs.Get(ctx, id)
	cancel()
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	sseHeaders(w)
	flusher.Flush()
	if err := s.opts.Jobs.FollowLogs(r.Context(), id, sseWriter{w: w, flusher: flusher}); err != nil {
		if r.Context().Err() != nil {
			return
		}
		data, _ := json.Marshal(apiError{Error: err.Error()})
		fmt.Fprintf(w, "event: error\ndata: %s\n\n", data)
		flusher.Flush()
		return
	}
	ctx, cancel = context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	if j, err := s.opts.Jobs.Get(ctx, id); err == nil {
		data, _ := json.Marshal(j)
		fmt.Fprintf(w, "event: end\ndata: %s\n\n", data)
		flusher.Flush()
	}
}
