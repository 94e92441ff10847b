package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/goray/goray/sdk"
	"github.com/goray/goray/state"
)

// Large-object benchmarks: get of a 1 GB object, puts of large objects
// from several worker processes at once, and spilling to disk and
// restoring, each against a floor measured in the same run where one
// applies.

// Sizes of the get benchmarks (GB = 10^9 bytes, MB = 10^6).
const (
	getBigSize   = 1_000_000_000
	getSmallSize = 1_000_000
)

// multi_client_put_gigabytes: each client task puts putChunksPerTask
// objects of up to putChunkSize bytes.
const (
	putChunkSize     = 256 << 20
	putChunksPerTask = 4
)

// The spill benchmark's child cluster: a small store, and puts of
// spillObjectSize-byte objects, held, until spillPutBytes are put, so that
// about spillPutBytes - spillStoreMemory spill.
const (
	spillStoreMemory = 512 << 20
	spillObjectSize  = 64 << 20
	spillPutBytes    = 1_500_000_000
	// fileChunk is the write and read size of the plain-file floor.
	fileChunk = 4 << 20
)

// Remote functions, registered at package init like those of funcs.go.
var (
	// putChunks is one client of multi_client_put_gigabytes: n puts of
	// size bytes from this worker process, each ref dropped and
	// runtime.GC run after it (as single_client_put_gigabytes does in the
	// driver) so its cleanup frees the stored copy. It returns the bytes
	// put and the nanoseconds spent in the Put calls.
	putChunks = sdk.Register2("bench.PutChunks", func(ctx context.Context, size, n int) ([]int64, error) {
		src := workerSource(size)
		var inPut time.Duration
		for range n {
			t0 := time.Now()
			ref, err := sdk.Put(ctx, src)
			inPut += time.Since(t0)
			if err != nil {
				return nil, err
			}
			_ = ref
			runtime.GC()
		}
		return []int64{int64(size) * int64(n), int64(inPut)}, nil
	})

	// viewLatency is get_view_1GB_object_latency_s_from_worker: in a
	// worker (whose store calls are requests to the raylet over its
	// socket), one GetView+Release of ref first, then timed ones until n
	// samples or 300 ms. It returns the median and the first call's
	// nanoseconds.
	viewLatency = sdk.Register2("bench.ViewLatency", func(ctx context.Context, ref sdk.ObjectRef, n int) ([]int64, error) {
		var size int
		first := time.Now()
		if err := viewOnce(ctx, ref, &size); err != nil {
			return nil, err
		}
		firstTime := time.Since(first)
		med, _, err := medianLatency(n, 300*time.Millisecond, func() error { return viewOnce(ctx, ref, &size) })
		if err != nil {
			return nil, err
		}
		return []int64{int64(med), int64(firstTime), int64(size)}, nil
	})
)

// viewOnce is one GetView and Release of ref; it stores the view's length.
func viewOnce(ctx context.Context, ref sdk.ObjectRef, size *int) error {
	v, err := sdk.GetView(ctx, ref)
	if err != nil {
		return err
	}
	*size = len(v.Bytes())
	v.Release()
	return nil
}

// A worker keeps its put source between calls, so that only the first
// call in each worker process pays for making it.
var (
	workerSrcMu sync.Mutex
	workerSrc   []byte
)

func workerSource(size int) []byte {
	workerSrcMu.Lock()
	defer workerSrcMu.Unlock()
	if len(workerSrc) != size {
		workerSrc = filledBytes(size)
	}
	return workerSrc
}

// filledBytes returns size bytes of a repeating non-zero pattern: real
// bytes, since untouched pages would all map the zero page.
func filledBytes(size int) []byte {
	b := make([]byte, size)
	for i := range min(size, 4093) {
		b[i] = byte(i*7 + 1)
	}
	for n := min(size, 4093); n < size; n *= 2 {
		copy(b[n:], b[:n])
	}
	return b
}

// medianLatency times fn call by call, n times or until limit has passed
// (at least once), and returns the median and the minimum.
func medianLatency(n int, limit time.Duration, fn func() error) (median, fastest time.Duration, err error) {
	times := make([]time.Duration, 0, n)
	end := time.Now().Add(limit)
	for len(times) < n && (len(times) == 0 || time.Now().Before(end)) {
		t0 := time.Now()
		if err := fn(); err != nil {
			return 0, 0, err
		}
		times = append(times, time.Since(t0))
	}
	slices.Sort(times)
	return times[len(times)/2], times[0], nil
}

// single_client_get_gigabytes and the get latencies. A 1 GB []byte is put
// once; every Get of it returns a view of the shared memory (no copy), so
// the GB/s figure only says that the get takes constant time, which the
// latencies of the 1 GB and the 1 MB objects show directly. The first Get
// pins the object for as long as this process holds a ref and caches the
// view, so the repeated Gets are a table lookup; GetView asks the store
// for a pin each time (in the driver of the embedded cluster the store is
// in this process; in a worker, a request to the raylet), and Release
// gives it back.
func benchGetGigabytes(ctx context.Context, h *harness) ([]result, error) {
	if h.cfg.storeMemory < getBigSize+getSmallSize+(64<<20) {
		return nil, fmt.Errorf("the store (%d bytes, -store-memory) cannot hold a %d-byte object", h.cfg.storeMemory, getBigSize)
	}
	src := filledBytes(getBigSize)
	t0 := time.Now()
	big, err := sdk.Put(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("put of %d bytes: %w", getBigSize, err)
	}
	putTime := time.Since(t0)
	src = nil
	small, err := sdk.Put(ctx, filledBytes(getSmallSize))
	if err != nil {
		return nil, fmt.Errorf("put of %d bytes: %w", getSmallSize, err)
	}
	defer runtime.KeepAlive(big)
	defer runtime.KeepAlive(small)

	getOnce := func(ref sdk.Ref[[]byte], want int) error {
		b, err := sdk.Get(ctx, ref)
		if err == nil && len(b) != want {
			err = fmt.Errorf("Get returned %d bytes, want %d", len(b), want)
		}
		return err
	}
	t0 = time.Now()
	if err := getOnce(big, getBigSize); err != nil {
		return nil, err
	}
	firstGet := time.Since(t0)
	log.Printf("single_client_get_gigabytes: put of %d bytes took %v, the first Get (pins, caches the view) %v",
		getBigSize, putTime.Round(time.Millisecond), firstGet.Round(time.Microsecond))

	out, err := h.rate(ctx, "single_client_get_gigabytes", getBigSize/1e9, "GB_per_s", func() error { return getOnce(big, getBigSize) })
	if err != nil {
		return out, err
	}
	const samples = 20000
	lat := func(name string, fn func() error) error {
		med, fastest, err := medianLatency(samples, 500*time.Millisecond, fn)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		log.Printf("%s: median %v, fastest %v", name, med, fastest)
		out = append(out, result{Name: name, Value: med.Seconds(), Unit: "s"})
		return nil
	}
	if err := lat("get_1GB_object_latency_s", func() error { return getOnce(big, getBigSize) }); err != nil {
		return out, err
	}
	if err := lat("get_1MB_object_latency_s", func() error { return getOnce(small, getSmallSize) }); err != nil {
		return out, err
	}
	var size int
	if err := lat("get_view_1GB_object_latency_s", func() error {
		if err := viewOnce(ctx, big.Untyped(), &size); err != nil {
			return err
		}
		if size != getBigSize {
			return fmt.Errorf("GetView returned %d bytes, want %d", size, getBigSize)
		}
		return nil
	}); err != nil {
		return out, err
	}

	// The same from a worker process, where the pin is a request to the
	// raylet over the worker's socket.
	r, err := viewLatency.Remote(ctx, big.Untyped(), samples).Get(ctx)
	if err != nil {
		return out, fmt.Errorf("get_view_1GB_object_latency_s_from_worker: %w", err)
	}
	if r[2] != getBigSize {
		return out, fmt.Errorf("get_view_1GB_object_latency_s_from_worker: the worker's view has %d bytes, want %d", r[2], getBigSize)
	}
	log.Printf("get_view_1GB_object_latency_s_from_worker: median %v, first GetView in the worker %v", time.Duration(r[0]), time.Duration(r[1]))
	out = append(out, result{Name: "get_view_1GB_object_latency_s_from_worker", Value: time.Duration(r[0]).Seconds(), Unit: "s"})
	return out, nil
}

// multi_client_put_gigabytes: one client task per CPU of the node, each
// putting putChunksPerTask objects of 256 MiB from its worker process
// (Ray: 10 tasks x 10 puts of 80 MiB); aggregate GB/s of a round, from the
// driver's submit to the last task's result. Each client holds at most two
// objects at a time (the one just put, and the one whose cleanup may still
// be on its way), so the chunk is made smaller if the store is too small
// for that.
func benchMultiClientPutGigabytes(ctx context.Context, h *harness) ([]result, error) {
	const name = "multi_client_put_gigabytes"
	clients := runtime.NumCPU()
	size := putChunkSize
	if fit := int(h.cfg.storeMemory / uint64(4*clients)); fit < size {
		size = fit &^ 4095
	}
	perRound := float64(clients*putChunksPerTask*size) / 1e9
	log.Printf("%s: %d client tasks x %d puts of %d bytes (%.2f GB per round)", name, clients, putChunksPerTask, size, perRound)
	var inPut []time.Duration
	out, err := h.rate(ctx, name, perRound, "GB_per_s", func() error {
		refs := make([]sdk.Ref[[]int64], clients)
		for i := range refs {
			refs[i] = putChunks.Remote(ctx, size, putChunksPerTask)
		}
		vals, err := sdk.GetAll(ctx, refs)
		if err != nil {
			return err
		}
		for _, v := range vals {
			if len(v) != 2 || v[0] != int64(size*putChunksPerTask) {
				return fmt.Errorf("a client reported %v, want %d bytes put", v, size*putChunksPerTask)
			}
			inPut = append(inPut, time.Duration(v[1]).Round(time.Millisecond))
		}
		return nil
	})
	if len(inPut) > 0 {
		log.Printf("%s: time each client spent in its %d Put calls (warm-up rounds first): %v", name, putChunksPerTask, inPut)
	}
	return out, err
}

// spill_GB_per_s and the rest: this binary re-run with -spill-child in a
// fresh process with a cluster of its own (a 512 MiB store; the main
// cluster's 4 GiB would take too long to fill), which prints its results as
// JSON lines.
func benchSpill(ctx context.Context, h *harness) ([]result, error) {
	dir := filepath.Join(h.cfg.sessions, "spill")
	out, err := runSelfChild(ctx, "spill child", "-spill-child", dir)
	if err != nil {
		return out, err
	}
	// The child's Shutdown must have removed its spill files.
	var left []string
	_ = filepath.WalkDir(filepath.Join(dir, "spill"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		return out, fmt.Errorf("spill child left %d spill file(s), e.g. %s", len(left), left[0])
	}
	return out, nil
}

// runSelfChild is runChild of this binary with flag set to dir.
func runSelfChild(ctx context.Context, what, flag, dir string) ([]result, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return runChild(ctx, what, exe, flag, dir)
}

// runChild runs this binary with args and reads the JSON results it
// prints, one per line.
func runChild(ctx context.Context, what, exe string, args ...string) ([]result, error) {
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	runErr := cmd.Run()
	var out []result
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var r result
		if line == "" {
			continue
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Name == "" {
			return out, fmt.Errorf("%s: unexpected output line %q (%v)", what, line, err)
		}
		out = append(out, r)
	}
	if runErr != nil {
		return out, fmt.Errorf("%s: %w", what, runErr)
	}
	return out, nil
}

// runSpillChild is the process of the spill benchmark; it prints one JSON
// result per line on stdout.
func runSpillChild(sessionDir string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := os.MkdirAll(sessionDir, 0o755); err != nil {
		log.Printf("spill child: %v", err)
		return 1
	}
	if err := sdk.Init(ctx, sdk.NodeCPUs(float64(runtime.NumCPU())), sdk.ObjectStoreMemory(spillStoreMemory),
		sdk.SessionDir(sessionDir), sdk.LogWriter(os.Stderr)); err != nil {
		log.Printf("spill child: sdk.Init: %v", err)
		return 1
	}
	rs, err := spillChild(ctx, sessionDir)
	for _, r := range rs {
		b, _ := json.Marshal(r)
		fmt.Printf("%s\n", b)
	}
	t0 := time.Now()
	sdk.Shutdown()
	log.Printf("spill child: sdk.Shutdown %v", time.Since(t0).Round(time.Millisecond))
	if err != nil {
		log.Printf("spill child: %v", err)
		return 1
	}
	return 0
}

func storeUsage(ctx context.Context) (state.StoreUsage, error) {
	rep, err := sdk.MemorySummary(ctx)
	if err != nil {
		return state.StoreUsage{}, err
	}
	if len(rep.Nodes) == 0 {
		return state.StoreUsage{}, fmt.Errorf("memory summary without nodes (errors %v)", rep.Errors)
	}
	return rep.Nodes[0].Store, nil
}

func spillChild(ctx context.Context, sessionDir string) ([]result, error) {
	var out []result
	add := func(name string, v float64, unit string) { out = append(out, result{Name: name, Value: v, Unit: unit}) }
	src := filledBytes(spillObjectSize)
	total := (spillPutBytes + spillObjectSize - 1) / spillObjectSize
	fill := spillStoreMemory / spillObjectSize
	measured := total - fill
	fileBytes := int64(measured) * spillObjectSize
	plain := filepath.Join(sessionDir, "plain-file.bin")

	// Fill the store with held objects (these land on never-touched shm
	// pages and do not spill); then every further put must spill.
	refs := make([]sdk.Ref[[]byte], 0, total)
	t0 := time.Now()
	for range fill {
		ref, err := sdk.Put(ctx, src)
		if err != nil {
			return out, fmt.Errorf("put %d: %w", len(refs), err)
		}
		refs = append(refs, ref)
	}
	log.Printf("spill child: %d puts of %d bytes filled the %d-byte store in %v", fill, spillObjectSize, spillStoreMemory, time.Since(t0).Round(time.Millisecond))

	// Plain-file write, first pass, right before the spills. Each timed
	// write (and the spills) must find page-cache pages the machine has
	// used before: on a VM, memory the guest never touched is faulted in
	// from the host on first use, and a file written there ran at 0.35
	// GB/s against 5 GB/s on recycled pages. So an untimed file of the
	// same size is written and removed first; the timed file is removed
	// too, leaving its pages to the spills.
	w1, err := writeFileWarm(plain, src, fileBytes)
	if err != nil {
		return out, err
	}
	os.Remove(plain)
	before, err := storeUsage(ctx)
	if err != nil {
		return out, err
	}
	var putTimes []time.Duration
	t0 = time.Now()
	for range measured {
		t1 := time.Now()
		ref, err := sdk.Put(ctx, src)
		if err != nil {
			return out, fmt.Errorf("put %d: %w", len(refs), err)
		}
		putTimes = append(putTimes, time.Since(t1).Round(time.Millisecond))
		refs = append(refs, ref)
	}
	putWall := time.Since(t0)
	spilled, err := storeUsage(ctx)
	if err != nil {
		return out, err
	}
	log.Printf("spill child: %d spilling puts in %v, each %v; spilled before them %d bytes, after %d bytes in %d objects, spill time %v",
		measured, putWall.Round(time.Millisecond), putTimes, before.SpilledBytesTotal, spilled.SpilledBytesTotal, spilled.SpilledObjectsTotal, spilled.SpillTime.Round(time.Millisecond))
	if spilled.SpilledBytesTotal == 0 || spilled.SpillTime <= 0 {
		return out, fmt.Errorf("nothing spilled (store %+v)", spilled)
	}

	// Plain-file write, second pass: after the spills, with their dirty
	// pages in the page cache. The floor is the faster pass.
	w2, err := writeFileWarm(plain, src, fileBytes)
	if err != nil {
		return out, err
	}
	defer os.Remove(plain)
	fileWrite := max(w1, w2)
	log.Printf("spill child: plain file write of %d bytes in %d-byte chunks: %.2f GB/s before the spills, %.2f GB/s after", fileBytes, fileChunk, w1/1e9, w2/1e9)

	// Restore: drop the objects still in memory, so the restores need
	// not spill anything, then GetView+Release each spilled one.
	rep, err := sdk.MemorySummary(ctx)
	if err != nil {
		return out, err
	}
	onDisk := map[string]bool{}
	for _, o := range rep.Objects {
		if o.Spilled && !o.InMemory {
			onDisk[o.ID] = true
		}
	}
	var toRestore []sdk.Ref[[]byte]
	for _, r := range refs {
		if onDisk[r.ID().String()] {
			toRestore = append(toRestore, r)
		}
	}
	refs = nil
	runtime.GC()
	deadline := time.Now().Add(3 * time.Second)
	for {
		u, err := storeUsage(ctx)
		if err != nil {
			return out, err
		}
		if u.UsedBytes == 0 || time.Now().After(deadline) {
			log.Printf("spill child: %d spilled objects to restore; store used %d bytes after dropping the others", len(toRestore), u.UsedBytes)
			break
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	var restoreTimes []time.Duration
	var size int
	t0 = time.Now()
	for _, r := range toRestore {
		t1 := time.Now()
		if err := viewOnce(ctx, r.Untyped(), &size); err != nil {
			return out, fmt.Errorf("restore: %w", err)
		}
		if size != spillObjectSize {
			return out, fmt.Errorf("restore: view of %d bytes, want %d", size, spillObjectSize)
		}
		restoreTimes = append(restoreTimes, time.Since(t1).Round(time.Millisecond))
	}
	restoreWall := time.Since(t0)
	restored, err := storeUsage(ctx)
	if err != nil {
		return out, err
	}
	log.Printf("spill child: %d GetView+Release in %v, each %v; restored %d bytes in %d objects, restore time %v",
		len(toRestore), restoreWall.Round(time.Millisecond), restoreTimes, restored.RestoredBytesTotal, restored.RestoredObjectsTotal, restored.RestoreTime.Round(time.Millisecond))
	if restored.RestoredBytesTotal == 0 || restored.RestoreTime <= 0 {
		return out, fmt.Errorf("nothing restored (store %+v)", restored)
	}
	toRestore = nil

	fileRead, err := readFile(plain, fileBytes)
	if err != nil {
		return out, err
	}
	os.Remove(plain)

	spill := spilled.SpillBytesPerSec / 1e9
	restore := restored.RestoreBytesPerSec / 1e9
	add("file_write_GB_per_s", fileWrite/1e9, "GB_per_s")
	add("spill_GB_per_s", spill, "GB_per_s")
	add("spill_vs_file_write", spill/(fileWrite/1e9), "ratio")
	add("spill_end_to_end_GB_per_s", float64(measured)*spillObjectSize/putWall.Seconds()/1e9, "GB_per_s")
	add("file_read_GB_per_s", fileRead/1e9, "GB_per_s")
	add("restore_GB_per_s", restore, "GB_per_s")
	add("restore_vs_file_read", restore/(fileRead/1e9), "ratio")
	add("restore_end_to_end_GB_per_s", float64(len(restoreTimes))*spillObjectSize/restoreWall.Seconds()/1e9, "GB_per_s")
	return out, nil
}

// writeFileWarm is writeFile preceded by an untimed writeFile of the same
// size to another file, removed at once, so that the timed one reuses its
// page-cache pages.
func writeFileWarm(path string, src []byte, n int64) (float64, error) {
	warm := path + ".warm"
	if _, err := writeFile(warm, src, n); err != nil {
		os.Remove(warm)
		return 0, err
	}
	if err := os.Remove(warm); err != nil {
		return 0, err
	}
	return writeFile(path, src, n)
}

// writeFile writes n bytes to a new file at path with os.File.Write in
// fileChunk pieces taken from src in turn, closes it, and returns the
// bytes per second (create to close, as a spill round is timed).
func writeFile(path string, src []byte, n int64) (float64, error) {
	t0 := time.Now()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	var written int64
	for off := 0; written < n; off = (off + fileChunk) % len(src) {
		k := int(min(int64(fileChunk), n-written, int64(len(src)-off)))
		if _, err := f.Write(src[off : off+k]); err != nil {
			f.Close()
			return 0, err
		}
		written += int64(k)
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// readFile reads n bytes of path with ReadAt in fileChunk pieces into a
// buffer of spillObjectSize bytes (reused, touched beforehand), and returns
// the bytes per second (open to close, as a restore is timed).
func readFile(path string, n int64) (float64, error) {
	buf := filledBytes(spillObjectSize)
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var off int64
	for off < n {
		k := int(min(int64(fileChunk), n-off))
		b := buf[off%int64(len(buf)):][:k]
		if _, err := f.ReadAt(b, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(k) == n) {
			return 0, err
		}
		off += int64(k)
	}
	el := time.Since(t0)
	return float64(n) / el.Seconds(), nil
}
