package core

import "sync"

// pinnedDispatcher runs an actor's mailbox on one long-lived goroutine
// instead of Proto.Actor's default of a new goroutine each time the
// mailbox wakes up. An actor answering one call at a time wakes up on
// every call; a fresh goroutine then grows its stack again for every
// method call and reply, which dominated the cost of a synchronous call.
type pinnedDispatcher struct {
	work chan func()
	done chan struct{}
	once sync.Once
}

func newPinnedDispatcher() *pinnedDispatcher {
	d := &pinnedDispatcher{work: make(chan func(), 1), done: make(chan struct{})}
	go d.loop()
	return d
}

func (d *pinnedDispatcher) loop() {
	for {
		select {
		case fn := <-d.work:
			fn()
		case <-d.done:
			return
		}
	}
}

// Schedule implements actor.Dispatcher. The mailbox schedules at most one
// run at a time, so the buffered channel never blocks a live actor.
func (d *pinnedDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	case <-d.done:
	}
}

// Throughput implements actor.Dispatcher: messages per run before the
// mailbox yields.
func (d *pinnedDispatcher) Throughput() int { return 300 }

// stop ends the goroutine once the actor is gone.
func (d *pinnedDispatcher) stop() { d.once.Do(func() { close(d.done) }) }
