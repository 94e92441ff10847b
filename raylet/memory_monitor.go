package raylet

import (
	"fmt"
	"strconv"
	"time"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	gstate "github.com/goray/goray/state"
)

// The memory monitor (Ray's MemoryMonitor and worker killing policy): a
// goroutine reads the node's memory every MemoryMonitorInterval and, only
// while the usage is above MemoryUsageThreshold, tells the raylet actor,
// which kills one worker chosen by pickOOMVictim and waits for that
// process to exit before it kills another. The raylet remembers why its
// workers died (deaths); an owner whose pushed task's worker connection
// failed asks (GET_WORKER_FAILURE_CAUSE) and fails or retries the task
// with that cause.

// Messages to the raylet actor.
type (
	// memoryPressure: the node's memory is above the threshold.
	// memoryPressure carries a reading over the threshold and its
	// number (Raylet.memReadings).
	memoryPressure struct {
		usage MemoryUsage
		seq   uint64
	}
	// causeTimeout: stop waiting for worker id's exit to answer the
	// owners asking why it died.
	causeTimeout struct{ id protos.WorkerID }
)

const (
	// maxDeaths bounds the failure causes a raylet keeps (Ray keeps them
	// for a while too: an owner asks within moments of the death).
	maxDeaths = 1024
	// causeWait is how long a question about a worker whose process has
	// not exited yet waits for its exit.
	causeWait = 2 * time.Second
	// redetectEvery re-reads which cgroup limits the node every so many
	// readings (a limit set or lifted while the raylet runs).
	redetectEvery = 40
	// noVictimLogGap spaces the warnings that memory is high but no
	// worker holds a lease.
	noVictimLogGap = 5 * time.Second
)

// memoryMonitorLoop reads the node's memory until the raylet stops.
func (r *Raylet) memoryMonitorLoop() {
	src := r.mem
	read := r.cfg.ReadMemory
	threshold := r.cfg.MemoryUsageThreshold
	if u, err := r.readMemory(src); err == nil {
		r.cfg.Logger.Info().Float64("threshold", threshold).Str("limit", gstate.FormatBytes(u.Total)).Str("used", gstate.FormatBytes(u.Used)).
			Str("source", u.Source).Dur("interval", r.cfg.MemoryMonitorInterval).Msgf("memory monitor on: kills a worker when memory use passes %s", gstate.FormatBytes(uint64(threshold*float64(u.Total))))
	} else {
		r.cfg.Logger.Warn().Err(err).Msg("memory monitor: cannot read the node's memory; it keeps trying")
	}
	t := time.NewTicker(r.cfg.MemoryMonitorInterval)
	defer t.Stop()
	var lastErr time.Time
	for n := 1; ; n++ {
		select {
		case <-r.stopped:
			return
		case <-t.C:
		}
		if read == nil && n%redetectEvery == 0 {
			src = detectMemorySource("/")
		}
		seq := r.memReadings.Add(1)
		u, err := r.readMemory(src)
		if err != nil {
			if time.Since(lastErr) > time.Minute {
				lastErr = time.Now()
				r.cfg.Logger.Warn().Err(err).Msg("memory monitor: cannot read the node's memory")
			}
			continue
		}
		if u.Fraction() > threshold {
			r.system.Root.Send(r.pid, memoryPressure{usage: u, seq: seq})
		}
	}
}

// readMemory reads the node's memory through Config.ReadMemory, or src.
func (r *Raylet) readMemory(src *memorySource) (MemoryUsage, error) {
	if r.cfg.ReadMemory != nil {
		return r.cfg.ReadMemory()
	}
	return src.read()
}

// memoryPressure kills one worker, unless the last one killed has not
// exited yet (its memory is not free yet), or the reading was taken before
// it had: readings queue while a kill is under way, and a stale one would
// kill a second worker for memory the first one already gave back.
func (s *state) memoryPressure(u MemoryUsage, seq uint64) {
	if s.stopping || seq < s.oomFreshFrom {
		return
	}
	if v := s.oomVictim; v != nil {
		select {
		case <-v.exited:
			s.oomVictim = nil
			s.oomFreshFrom = s.r.memReadings.Load() + 1
		default:
		}
		return
	}
	cands, workers := s.oomCandidates()
	choice, ok := pickOOMVictim(cands)
	if !ok {
		if now := s.now(); now.Sub(s.lastNoVictim) >= noVictimLogGap {
			s.lastNoVictim = now
			s.r.cfg.Logger.Warn().Str("used", gstate.FormatBytes(u.Used)).Str("limit", gstate.FormatBytes(u.Total)).Float64("threshold", s.r.cfg.MemoryUsageThreshold).
				Msg("memory monitor: memory use is above the threshold but no worker holds a lease to kill")
		}
		return
	}
	w, c := workers[choice.Index], cands[choice.Index]
	var why string
	switch {
	case c.Actor && c.Detached:
		why = "a detached actor's: no task or other actor was left to kill"
	case c.Actor:
		why = "an actor's: no task worker was left to kill"
	case !c.Retriable:
		why = "its task may not be retried (MaxRetries 0), so it fails"
	case choice.Retry:
		why = "the newest task of the caller with the most tasks running on the node; the task is retried"
	default:
		why = "its caller's only task running on the node, so the task fails rather than be killed again"
	}
	frac, thr := fractions(u.Fraction(), s.r.cfg.MemoryUsageThreshold)
	msg := fmt.Sprintf("node %s used %s of %s (%s > threshold %s); the raylet's memory monitor killed worker pid %d, %s. "+
		"Run fewer such tasks at once (more CPUs or sdk.Memory per task), give the node more memory, or raise the threshold (goray start --memory-usage-threshold, GORAY_MEMORY_USAGE_THRESHOLD)",
		s.r.cfg.NodeID.Short(), gstate.FormatBytes(u.Used), gstate.FormatBytes(u.Total), frac, thr, w.pid, why)
	s.recordDeath(w.id, &protos.GetWorkerFailureCauseReply{
		Kind:            protos.ErrorKind_ERROR_KIND_OUT_OF_MEMORY,
		Message:         msg,
		MemoryMonitor:   true,
		FailImmediately: !c.Actor && !choice.Retry,
	})
	s.oomVictim = w
	s.r.monitorKills.Add(1)
	s.r.cfg.Logger.Warn().Str("worker", w.id.Short()).Int("pid", w.pid).Str("owner", c.Owner).Bool("actor", c.Actor).Bool("retry", choice.Retry).
		Str("used", gstate.FormatBytes(u.Used)).Str("limit", gstate.FormatBytes(u.Total)).Str("source", u.Source).
		Msg("memory monitor: killing a worker, the node is low on memory")
	w.kill()
}

// oomCandidates lists the workers holding a lease that are not being
// killed already, as the policy sees them.
func (s *state) oomCandidates() ([]oomCandidate, []*workerProc) {
	var cands []oomCandidate
	var workers []*workerProc
	for _, w := range s.workers {
		if w.dead || w.killed || len(w.leases) == 0 {
			continue
		}
		var newest *leaseState
		retriable := true
		for _, l := range w.leases {
			if newest == nil || l.seq > newest.seq {
				newest = l
			}
			retriable = retriable && l.retriable
		}
		cands = append(cands, oomCandidate{
			Owner:     ownerName(newest.owner),
			Granted:   newest.seq,
			Retriable: retriable && !w.dedicated,
			Actor:     w.dedicated,
			Detached:  w.detached,
		})
		workers = append(workers, w)
	}
	return cands, workers
}

// ownerName names who asked for a lease: the policy's group.
func ownerName(c *wire.Conn) string {
	if c == nil {
		return "gcs"
	}
	switch v := c.Value().(type) {
	case *jobState:
		return "driver of job " + v.id.Short()
	case *workerProc:
		return "worker " + v.id.Short()
	}
	return fmt.Sprintf("remote caller %p", c)
}

// recordDeath keeps why worker id died, forgetting the oldest past
// maxDeaths.
func (s *state) recordDeath(id protos.WorkerID, cause *protos.GetWorkerFailureCauseReply) {
	if s.deaths == nil {
		s.deaths = map[protos.WorkerID]*protos.GetWorkerFailureCauseReply{}
	}
	if _, ok := s.deaths[id]; !ok {
		s.deathOrder = append(s.deathOrder, id)
	}
	s.deaths[id] = cause
	for len(s.deathOrder) > maxDeaths {
		delete(s.deaths, s.deathOrder[0])
		s.deathOrder = s.deathOrder[1:]
	}
}

// exitCause records why a worker that exited died, unless the monitor
// recorded it when it killed the worker, and answers the owners waiting
// for it.
func (s *state) exitCause(w *workerProc, err error, kernelOOM bool) {
	if _, ok := s.deaths[w.id]; !ok {
		switch {
		case kernelOOM && !w.signalled:
			s.r.kernelOOMKills.Add(1)
			limit := ""
			if u, rerr := s.r.readMemory(s.r.mem); rerr == nil && u.Total > 0 {
				limit = fmt.Sprintf(" (its memory: %s of %s now, %s)", gstate.FormatBytes(u.Used), gstate.FormatBytes(u.Total), u.Source)
			}
			s.recordDeath(w.id, &protos.GetWorkerFailureCauseReply{
				Kind: protos.ErrorKind_ERROR_KIND_OUT_OF_MEMORY,
				Message: fmt.Sprintf("worker pid %d on node %s was killed by the kernel's OOM killer: the node ran out of memory%s. "+
					"The memory monitor (threshold %.2f) did not kill a worker in time; run fewer such tasks at once or give the node more memory",
					w.pid, s.r.cfg.NodeID.Short(), limit, s.r.cfg.MemoryUsageThreshold),
			})
			s.r.cfg.Logger.Warn().Str("worker", w.id.Short()).Int("pid", w.pid).Msg("worker killed by the kernel's OOM killer")
		case w.signalled:
			s.recordDeath(w.id, &protos.GetWorkerFailureCauseReply{Kind: protos.ErrorKind_ERROR_KIND_WORKER_CRASHED,
				Message: fmt.Sprintf("the raylet of node %s stopped worker pid %d", s.r.cfg.NodeID.Short(), w.pid)})
		default:
			how := "exited"
			if err != nil {
				how = err.Error()
			}
			msg := fmt.Sprintf("worker pid %d on node %s: %s", w.pid, s.r.cfg.NodeID.Short(), how)
			if w.logs != nil {
				msg += " (its log: " + w.logs.errPath + ")"
			}
			s.recordDeath(w.id, &protos.GetWorkerFailureCauseReply{Kind: protos.ErrorKind_ERROR_KIND_WORKER_CRASHED, Message: msg})
		}
	}
	delete(s.dying, w.id)
	s.answerCause(w.id)
}

type causeWaiter struct {
	conn *wire.Conn
	req  *wire.Request
}

// failureCause answers GET_WORKER_FAILURE_CAUSE: at once if the death is
// recorded, or the worker is unknown (then with an empty answer); after
// the process exits (or causeWait) if it is still on its way out.
func (s *state) failureCause(c *wire.Conn, req *wire.Request, id protos.WorkerID) {
	if _, ok := s.deaths[id]; ok {
		_ = c.Reply(req, s.deaths[id])
		return
	}
	w := s.workers[id]
	if w == nil {
		w = s.dying[id]
	}
	if w == nil {
		_ = c.Reply(req, &protos.GetWorkerFailureCauseReply{})
		return
	}
	if s.causeWaiters == nil {
		s.causeWaiters = map[protos.WorkerID][]causeWaiter{}
	}
	if len(s.causeWaiters[id]) == 0 {
		time.AfterFunc(causeWait, func() { s.r.system.Root.Send(s.r.pid, causeTimeout{id: id}) })
	}
	s.causeWaiters[id] = append(s.causeWaiters[id], causeWaiter{conn: c, req: req})
}

// answerCause answers the owners waiting for worker id's cause, with what
// is known (an empty answer if nothing).
func (s *state) answerCause(id protos.WorkerID) {
	ws := s.causeWaiters[id]
	if len(ws) == 0 {
		return
	}
	delete(s.causeWaiters, id)
	cause := s.deaths[id]
	if cause == nil {
		cause = &protos.GetWorkerFailureCauseReply{}
	}
	for _, w := range ws {
		_ = w.conn.Reply(w.req, cause)
	}
}

// fractions prints a usage and a threshold with two decimals, or as many
// more as it takes to tell them apart.
func fractions(used, threshold float64) (string, string) {
	for prec := 2; ; prec++ {
		a, b := strconv.FormatFloat(used, 'f', prec, 64), strconv.FormatFloat(threshold, 'f', prec, 64)
		if a != b || prec >= 6 {
			return a, b
		}
	}
}
