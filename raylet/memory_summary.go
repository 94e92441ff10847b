package raylet

import (
	"context"
	"sync"
	"time"

	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// MemorySummary is the node's part of goray memory: its store's occupancy,
// spill counters and objects, and the object tables of the drivers and
// workers connected to it (each asked over its connection; a process that
// does not answer within ctx is left out).
func (r *Raylet) MemorySummary(ctx context.Context) *protos.MemorySummaryReply {
	out := &protos.MemorySummaryReply{NodeId: r.cfg.NodeID.Bytes(), Stats: storeStatsProto(r.store.Stats(), r.store.SpillDir())}
	for _, o := range r.store.Objects() {
		out.Objects = append(out.Objects, &protos.StoreObjectInfo{
			ObjectId:      o.ID.Bytes(),
			OwnerWorkerId: o.Owner.Bytes(),
			Size:          o.Size,
			InMemory:      o.InMemory,
			Spilled:       o.Spilled,
			Pins:          int32(o.Pins),
			SpillPath:     o.SpillPath,
			Sealed:        o.Sealed,
		})
	}
	res, err := r.system.Root.RequestFuture(r.pid, clientsQuery{}, 5*time.Second).Result()
	if err != nil {
		return out
	}
	conns := res.([]*wire.Conn)
	replies := make([]*protos.GetRefsReply, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var reply protos.GetRefsReply
			if err := c.Call(ctx, protos.Method_GET_REFS, &protos.GetRefsRequest{}, &reply); err == nil {
				replies[i] = &reply
			}
		}()
	}
	wg.Wait()
	for _, rep := range replies {
		if rep != nil {
			out.Processes = append(out.Processes, rep)
		}
	}
	return out
}

func storeStatsProto(st objstore.Stats, spillDir string) *protos.StoreStats {
	return &protos.StoreStats{
		Capacity:             st.Capacity,
		Used:                 st.Used,
		Pinned:               st.Pinned,
		NumObjects:           uint64(st.NumObjects),
		NumSpilled:           uint64(st.NumSpilled),
		SpilledBytes:         st.SpilledBytes,
		SpillFiles:           uint64(st.SpillFiles),
		SpilledBytesTotal:    st.SpilledBytesTotal,
		SpilledObjectsTotal:  uint64(st.SpilledObjectsTotal),
		RestoredBytesTotal:   st.RestoredBytesTotal,
		RestoredObjectsTotal: uint64(st.RestoredObjectsTotal),
		SpillNanos:           uint64(st.SpillTime.Nanoseconds()),
		RestoreNanos:         uint64(st.RestoreTime.Nanoseconds()),
		LargestFree:          st.LargestFree,
		SpillDir:             spillDir,
	}
}
