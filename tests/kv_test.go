package tests

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/goray/goray/sdk"
)

// TestKV: the cluster's key-value store from a driver and from a task.
func TestKV(t *testing.T) {
	ctx := startCluster(t)
	if err := sdk.KVPut(ctx, "kvtest", "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := sdk.KVPutIfAbsent(ctx, "kvtest", "a", []byte("2")); !errors.Is(err, sdk.ErrKVExists) {
		t.Fatalf("KVPutIfAbsent on a taken key: %v", err)
	}
	if err := sdk.KVPutIfAbsent(ctx, "kvtest", "b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := sdk.KVGet(ctx, "kvtest", "a"); err != nil || !ok || string(v) != "1" {
		t.Fatalf("KVGet a = %q %v %v", v, ok, err)
	}
	if _, ok, err := sdk.KVGet(ctx, "other", "a"); err != nil || ok {
		t.Fatalf("another namespace sees the key: %v %v", ok, err)
	}
	// A task reads what the driver wrote.
	if v, err := KVRead.Remote(ctx, "b").Get(ctx); err != nil || v != "2" {
		t.Fatalf("KVGet in a task = %q %v", v, err)
	}
	keys, err := sdk.KVKeys(ctx, "kvtest", "")
	if err != nil || !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("KVKeys = %v %v", keys, err)
	}
	if del, err := sdk.KVDelete(ctx, "kvtest", "a"); err != nil || !del {
		t.Fatalf("KVDelete = %v %v", del, err)
	}
	if del, err := sdk.KVDelete(ctx, "kvtest", "a"); err != nil || del {
		t.Fatalf("KVDelete again = %v %v", del, err)
	}
	if err := sdk.KVPut(ctx, "kvtest", "big", make([]byte, sdk.MaxKVValueBytes+1)); !errors.Is(err, sdk.ErrArgument) || !strings.Contains(err.Error(), "1048577 bytes") {
		t.Fatalf("a 2 MiB value: %v", err)
	}
}
