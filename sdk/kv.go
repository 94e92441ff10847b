package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/core"
)

// The cluster's key-value store (Ray's internal_kv), kept by the GCS in
// JetStream: small records a library keeps for the cluster, such as
// goray Serve's target state, which outlive the process that wrote them
// and a GCS restart. Keys live in namespaces; a value is at most
// MaxKVValueBytes.
//
//	err := sdk.KVPut(ctx, "myapp", "config", data)
//	data, ok, err := sdk.KVGet(ctx, "myapp", "config")

// ErrKVExists: KVPutIfAbsent found the key taken.
var ErrKVExists = errors.New("goray: key exists")

// MaxKVValueBytes is the most a KV value may hold.
const MaxKVValueBytes = 1 << 20

func kvPut(ctx context.Context, ns, key string, value []byte, overwrite bool) (bool, error) {
	if len(value) > MaxKVValueBytes {
		return false, fmt.Errorf("%w: KVPut %s/%s: a value of %d bytes, more than the %d a KV value may hold", ErrArgument, ns, key, len(value), MaxKVValueBytes)
	}
	c, err := kvClient()
	if err != nil {
		return false, err
	}
	added, err := c.KVPut(ctx, ns, key, value, overwrite)
	if err != nil {
		return false, fmt.Errorf("goray: KVPut %s/%s: %w", ns, key, publicError(err))
	}
	return added, nil
}

func kvClient() (*gcs.Client, error) {
	w := core.Current()
	if w == nil {
		return nil, ErrNotInitialized
	}
	return w.GCS()
}

// KVPut stores value under key in namespace ns, replacing what was there.
func KVPut(ctx context.Context, ns, key string, value []byte) error {
	_, err := kvPut(ctx, ns, key, value, true)
	return err
}

// KVPutIfAbsent stores value under key only if the key is free; it
// returns ErrKVExists otherwise.
func KVPutIfAbsent(ctx context.Context, ns, key string, value []byte) error {
	added, err := kvPut(ctx, ns, key, value, false)
	if err != nil {
		return err
	}
	if !added {
		return fmt.Errorf("%w: %s/%s", ErrKVExists, ns, key)
	}
	return nil
}

// KVGet returns the value under key; ok is false if there is none.
func KVGet(ctx context.Context, ns, key string) (value []byte, ok bool, err error) {
	c, err := kvClient()
	if err != nil {
		return nil, false, err
	}
	v, ok, err := c.KVGet(ctx, ns, key)
	if err != nil {
		return nil, false, fmt.Errorf("goray: KVGet %s/%s: %w", ns, key, publicError(err))
	}
	return v, ok, nil
}

// KVDelete removes key; deleted is false if it was not there.
func KVDelete(ctx context.Context, ns, key string) (deleted bool, err error) {
	c, err := kvClient()
	if err != nil {
		return false, err
	}
	deleted, err = c.KVDelete(ctx, ns, key)
	if err != nil {
		return false, fmt.Errorf("goray: KVDelete %s/%s: %w", ns, key, publicError(err))
	}
	return deleted, nil
}

// KVKeys lists the keys of namespace ns that start with prefix.
func KVKeys(ctx context.Context, ns, prefix string) ([]string, error) {
	c, err := kvClient()
	if err != nil {
		return nil, err
	}
	keys, err := c.KVKeys(ctx, ns, prefix)
	if err != nil {
		return nil, fmt.Errorf("goray: KVKeys %s/%s*: %w", ns, prefix, publicError(err))
	}
	return keys, nil
}
