package gcs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/protos"
)

func TestPackagesToDelete(t *testing.T) {
	now := time.Unix(10_000, 0)
	old := func(min int) time.Time { return now.Add(-time.Duration(min) * time.Minute) }
	d := func(c string) string { return string(bytes.Repeat([]byte(c), 64)) }
	objects := []storedObject{
		{BinaryObject(d("a")), 300, old(60)},  // the live job's binary
		{PackageObject(d("b")), 300, old(50)}, // the live job's working dir
		{BinaryObject(d("c")), 300, old(40)},  // a finished job's: the oldest candidate
		{PackageObject(d("e")), 300, old(30)}, // a finished job's
		{PackageObject(d("f")), 300, old(2)},  // touched since the live job started
	}
	live := []*protos.JobInfo{{
		StartTimeUnixMs: old(10).UnixMilli(),
		Binaries:        []*protos.JobBinary{{Digest: d("a")}},
		RuntimeEnv:      &protos.RuntimeEnv{PackageDigest: d("b")},
	}}
	for _, tc := range []struct {
		name     string
		capBytes int64
		live     []*protos.JobInfo
		want     []string
	}{
		{name: "under half the cap", capBytes: 4000, live: live},
		{name: "over: oldest unused first, down to half", capBytes: 2400, live: live, want: []string{BinaryObject(d("c"))}},
		{name: "far over: what running jobs may need stays", capBytes: 100, live: live, want: []string{BinaryObject(d("c")), PackageObject(d("e"))}},
		{name: "no job runs: all but the last minute's", capBytes: 100, want: []string{BinaryObject(d("a")), PackageObject(d("b")), BinaryObject(d("c")), PackageObject(d("e")), PackageObject(d("f"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := packagesToDelete(objects, tc.live, tc.capBytes, now)
			if !slices.Equal(got, tc.want) {
				t.Errorf("deleted %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPackagesStore: objects go in and out by name, an object not stored
// yet is waited for, and a finished job's objects are cleaned once the
// store is over half its cap while a running job's stay.
func TestPackagesStore(t *testing.T) {
	defer func(s time.Duration) { packagesGCSlack = s }(packagesGCSlack)
	packagesGCSlack = 0
	srv := runServer(t, Options{PackagesMaxBytes: 8 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	driver := dialRole(t, srv.ClientURL(), auth.RoleDriver)
	store, err := driver.Packages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put := func(size int) (string, []byte) {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		s := sha256.Sum256(b)
		d := hex.EncodeToString(s[:])
		if err := store.Put(ctx, BinaryObject(d), bytes.NewReader(b), map[string]string{PackageMetaGOOS: "linux", PackageMetaGOARCH: "amd64"}); err != nil {
			t.Fatal(err)
		}
		return d, b
	}
	finished, _ := put(3 << 20)
	running, content := put(2 << 20)
	var got bytes.Buffer
	if err := store.Fetch(ctx, BinaryObject(running), &got); err != nil || !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("fetched %d bytes, %v", got.Len(), err)
	}
	// A fetch waits for an upload under way.
	late := make([]byte, 1<<20)
	_, _ = rand.Read(late)
	ls := sha256.Sum256(late)
	lateName := BinaryObject(hex.EncodeToString(ls[:]))
	done := make(chan error, 1)
	go func() { var b bytes.Buffer; done <- store.Fetch(ctx, lateName, &b) }()
	time.Sleep(20 * time.Millisecond) // let the fetch start waiting; it must not fail meanwhile
	if err := store.Put(ctx, lateName, bytes.NewReader(late), nil); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("a fetch started before the upload: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := store.Fetch(short, BinaryObject(hex.EncodeToString(make([]byte, 32))), &bytes.Buffer{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("fetch of what is never stored: %v, want ErrNotFound", err)
	}

	// Two jobs: one finishes. 6 MiB stored of 8: the finished job's binary
	// goes, the running job's stays.
	gc := dial(t, srv.ClientURL())
	jobs := map[string]protos.JobID{finished: protos.NewUniqueID(), running: protos.NewUniqueID()}
	for d, id := range jobs {
		if err := gc.RegisterJob(ctx, &protos.JobInfo{JobId: id.Bytes(), Executable: "/bin/x", BinaryDigest: d,
			Binaries: []*protos.JobBinary{{Goos: "linux", Goarch: "amd64", Digest: d}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := gc.FinishJob(ctx, jobs[finished]); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if has, err := store.Has(ctx, BinaryObject(finished)); err != nil || has {
			return fmt.Errorf("the finished job's binary is still stored (%v)", err)
		}
		return nil
	})
	if has, err := store.Has(ctx, BinaryObject(running)); err != nil || !has {
		t.Errorf("the running job's binary was deleted (%v)", err)
	}
}

// dialRole connects a client to srv with role's NATS credentials.
func dialRole(t testing.TB, url string, role auth.Role) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, testLogger(t), natsOpts(t, role)...)
	if err != nil {
		t.Fatalf("Dial %s as %s: %v", url, role, err)
	}
	t.Cleanup(c.Close)
	return c
}
