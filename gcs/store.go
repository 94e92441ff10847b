package gcs

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// storeTimeout bounds one JetStream operation made by a manager actor. A
// manager handles its mailbox serially, so a hung store must not hang it
// forever; the caller gets ErrUnavailable instead.
const storeTimeout = 5 * time.Second

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
func loadBucket(kv jetstream.KeyValue, fn func(key string, value []byte) error) error {
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
			if err := fn(e.Key(), e.Value()); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: load bucket %s: %w", ErrUnavailable, kv.Bucket(), ctx.Err())
		}
	}
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
