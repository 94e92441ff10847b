package gcs

import (
	"cmp"
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/goray/goray/protos"
)

// Cleaning the packages store. Binaries and packages are kept after their
// job ends, so running a program again uploads nothing; once the store
// holds more than half its cap, the GCS deletes what no running job can
// need, oldest first, until it holds half. A running job may need what
// its record names (its binaries, its working directory) and anything
// stored or touched since it started: a driver touches an object it finds
// stored already (Packages.Touch), so a package a task of a running job
// reuses counts as new.

// packagesLowWater is the fraction of the cap the cleaning brings the
// store down to.
const packagesLowWater = 0.5

// packagesGCSlack widens "since the oldest running job started": clocks
// of drivers and the NATS server differ a little, and a driver uploads its
// working directory before its job is registered. A variable for tests.
var packagesGCSlack = time.Minute

// storedObject is what the cleaning needs of a stored object.
type storedObject struct {
	name    string
	size    uint64
	modTime time.Time
}

// packagesToDelete decides what to delete (pure: the cleaning's policy).
// live are the jobs not finished.
func packagesToDelete(objects []storedObject, live []*protos.JobInfo, capBytes int64, now time.Time) []string {
	var total uint64
	for _, o := range objects {
		total += o.size
	}
	target := uint64(float64(capBytes) * packagesLowWater)
	if total <= target {
		return nil
	}
	keep := map[string]bool{}
	since := now
	for _, j := range live {
		for _, b := range j.GetBinaries() {
			keep[BinaryObject(b.GetDigest())] = true
		}
		if d := j.GetBinaryDigest(); d != "" {
			keep[BinaryObject(d)] = true
		}
		if d := j.GetRuntimeEnv().GetPackageDigest(); d != "" {
			keep[PackageObject(d)] = true
		}
		if t := time.UnixMilli(j.GetStartTimeUnixMs()); t.Before(since) {
			since = t
		}
	}
	since = since.Add(-packagesGCSlack)
	var candidates []storedObject
	for _, o := range objects {
		if !keep[o.name] && o.modTime.Before(since) {
			candidates = append(candidates, o)
		}
	}
	slices.SortFunc(candidates, func(a, b storedObject) int {
		return cmp.Or(a.modTime.Compare(b.modTime), cmp.Compare(a.name, b.name))
	})
	var out []string
	for _, o := range candidates {
		if total <= target {
			break
		}
		out = append(out, o.name)
		total -= o.size
	}
	return out
}

// packagesCleaner runs the cleaning, one pass at a time.
type packagesCleaner struct {
	env      *managerEnv
	capBytes int64
	running  atomic.Bool
}

// clean runs a pass in the background unless one runs already.
func (c *packagesCleaner) clean(live []*protos.JobInfo) {
	if c == nil || !c.running.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.running.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		obs, err := c.env.js.ObjectStore(ctx, BucketPackages)
		if err != nil {
			c.env.log.Warn().Err(err).Msg("cleaning the packages store")
			return
		}
		// The store's size is one request; listing it reads every
		// object's record, which is only worth it past the low water.
		if st, err := obs.Status(ctx); err == nil && float64(st.Size()) <= float64(c.capBytes)*packagesLowWater {
			return
		}
		infos, err := obs.List(ctx)
		if err != nil && err != jetstream.ErrNoObjectsFound {
			c.env.log.Warn().Err(err).Msg("cleaning the packages store")
			return
		}
		objects := make([]storedObject, 0, len(infos))
		for _, i := range infos {
			objects = append(objects, storedObject{name: i.Name, size: i.Size, modTime: i.ModTime})
		}
		for _, name := range packagesToDelete(objects, live, c.capBytes, time.Now()) {
			if err := obs.Delete(ctx, name); err != nil {
				c.env.log.Warn().Err(err).Str("object", name).Msg("cleaning the packages store")
				return
			}
			c.env.log.Info().Str("object", name).Msg("deleted an unused runtime env package (the store was over half its cap)")
		}
	}()
}
