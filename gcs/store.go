package gcs

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// storeTimeout bounds one JetStream operation made by a manager actor. A
// manager handles its mailbox serially, so a hung store must not hang it
// forever; the caller gets ErrUnavailable instead.
const storeTimeout = 5 * time.Second

// loadRetryFor bounds how long a manager keeps trying to load its state
// while JetStream does not answer.
const loadRetryFor = 30 * time.Second

// openBucket creates the bucket if needed. History 1: the GCS needs only the
// current value, and an operator reading it with `nats kv get` sees that.
func openBucket(js jetstream.JetStream, name, description string, replicas int) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: description,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: open bucket %s: %w", ErrUnavailable, name, err)
	}
	return kv, nil
}

// loadBucket calls fn for every live key. A watcher delivers all current
// values over one consumer, where listing keys and getting each would cost
// a round trip per key on every GCS start.
func loadBucket(kv jetstream.KeyValue, log zerolog.Logger, fn func(key string, value []byte) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("%w: watch bucket %s: %w", ErrUnavailable, kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("%w: bucket %s watcher closed while loading", ErrUnavailable, kv.Bucket())
			}
			if e == nil { // initial values done
				return nil
			}
			if err := loadRecord(log, kv.Bucket(), fn, e.Key(), e.Value()); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: load bucket %s: %w", ErrUnavailable, kv.Bucket(), ctx.Err())
		}
	}
}

// loadRecord runs fn on one record. A panic there is a bug, but one that a
// manager would meet again on every restart, reloading the same record,
// until its supervisor gave up on it and the GCS stopped answering its
// requests: the record is skipped instead.
func loadRecord(log zerolog.Logger, bucket string, fn func(key string, value []byte) error, key string, value []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error().Str("bucket", bucket).Str("key", key).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("loading a stored record panicked; skipped it")
			err = nil
		}
	}()
	return fn(key, value)
}

func storePut(kv jetstream.KeyValue, key string, value []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if _, err := kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("%w: write %s/%s: %w", ErrUnavailable, kv.Bucket(), key, err)
	}
	return nil
}

func storeDelete(kv jetstream.KeyValue, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("%w: delete %s/%s: %w", ErrUnavailable, kv.Bucket(), key, err)
	}
	return nil
}
