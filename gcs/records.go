package gcs

import (
	"errors"
	"fmt"

	"github.com/goray/goray/internal/recordjson"
	"github.com/goray/goray/protos"
	"google.golang.org/protobuf/proto"
)

// Decoders of the records the managers load from their buckets on start.
// A record is trusted no more than a request: the bucket may hold what an
// older GCS wrote, what an operator put there with `nats kv put`, or a
// truncated write. Each decoder checks a record as the request that made
// it would be checked, plus that it is stored under its own key; a record
// that fails is skipped with a warning (skipRecord), so one bad record
// never keeps a manager from starting.

// errBadRecord is wrapped by the decoders' errors.
var errBadRecord = errors.New("gcs: bad stored record")

func badRecord(bucket, key string, err error) error {
	return fmt.Errorf("%w: %s/%.80q: %w", errBadRecord, bucket, key, err)
}

// decodeRecord unmarshals a record into m, bounding the input first.
func decodeRecord(bucket, key string, value []byte, m proto.Message) error {
	if len(value) > maxMessageBytes {
		return badRecord(bucket, key, fmt.Errorf("%d bytes, more than the limit of %d", len(value), maxMessageBytes))
	}
	if err := recordjson.Unmarshal(value, m); err != nil {
		return badRecord(bucket, key, err)
	}
	return nil
}

// keyedBy checks that a record's id is the key it is stored under.
func keyedBy(bucket, key, field string, id protos.UniqueID) error {
	if id.String() != key {
		return badRecord(bucket, key, fmt.Errorf("%s %s does not match the key", field, id))
	}
	return nil
}

// decodeNodeRecord decodes a goray_nodes record.
func decodeNodeRecord(key string, value []byte) (protos.NodeID, *protos.NodeInfo, error) {
	info := &protos.NodeInfo{}
	if err := decodeRecord(BucketNodes, key, value, info); err != nil {
		return protos.NodeID{}, nil, err
	}
	if err := checkNodeInfo("", info); err != nil {
		return protos.NodeID{}, nil, badRecord(BucketNodes, key, err)
	}
	id, _ := protos.UniqueIDFromBytes(info.GetNodeId()) // checked
	return id, info, keyedBy(BucketNodes, key, "node_id", id)
}

// decodeJobRecord decodes a goray_jobs record.
func decodeJobRecord(key string, value []byte) (protos.JobID, *protos.JobInfo, error) {
	job := &protos.JobInfo{}
	if err := decodeRecord(BucketJobs, key, value, job); err != nil {
		return protos.JobID{}, nil, err
	}
	if err := checkJobInfo("", job); err != nil {
		return protos.JobID{}, nil, badRecord(BucketJobs, key, err)
	}
	id, _ := protos.UniqueIDFromBytes(job.GetJobId()) // checked
	return id, job, keyedBy(BucketJobs, key, "job_id", id)
}

// decodeFunctionRecord decodes a goray_functions record.
func decodeFunctionRecord(key string, value []byte) (protos.JobID, *protos.FunctionTable, error) {
	t := &protos.FunctionTable{}
	if err := decodeRecord(BucketFunctions, key, value, t); err != nil {
		return protos.JobID{}, nil, err
	}
	if err := checkFunctionTable("", t); err != nil {
		return protos.JobID{}, nil, badRecord(BucketFunctions, key, err)
	}
	id, _ := protos.UniqueIDFromBytes(t.GetJobId()) // checked
	return id, t, keyedBy(BucketFunctions, key, "job_id", id)
}

// decodeKVRecord decodes a goray_kv record: the key holds the namespace
// and the key (kvKey), the value is stored as is.
func decodeKVRecord(k string, value []byte) (namespace, key string, err error) {
	if namespace, key, err = parseKVKey(k); err != nil {
		return "", "", badRecord(BucketKV, k, err)
	}
	if err := checkKVKey(namespace, key); err != nil {
		return "", "", badRecord(BucketKV, k, err)
	}
	if err := checkLen("", "value", value, maxKVValueBytes); err != nil {
		return "", "", badRecord(BucketKV, k, err)
	}
	return namespace, key, nil
}

// actorRecord is a decoded goray_actors record.
type actorRecord struct {
	id, job protos.UniqueID
	info    *protos.ActorInfo
}

// decodeActorRecord decodes a goray_actors record.
func decodeActorRecord(key string, value []byte) (actorRecord, error) {
	info := &protos.ActorInfo{}
	if err := decodeRecord(BucketActors, key, value, info); err != nil {
		return actorRecord{}, err
	}
	id, err := checkID("", "actor_id", info.GetActorId())
	if err == nil {
		err = keyedBy(BucketActors, key, "actor_id", id)
	}
	if err != nil {
		return actorRecord{}, badRecord(BucketActors, key, err)
	}
	if info.GetSpec() == nil {
		return actorRecord{}, badRecord(BucketActors, key, invalidf("spec", "required"))
	}
	if err := checkActorSpec("spec", info.GetSpec()); err != nil {
		return actorRecord{}, badRecord(BucketActors, key, err)
	}
	if specID, _ := protos.UniqueIDFromBytes(info.GetSpec().GetActorId()); specID != id { // checked
		return actorRecord{}, badRecord(BucketActors, key, invalidf("spec.actor_id", "%s is not the record's actor_id", specID))
	}
	if err := checkEnum("", "state", info.GetState(), protos.ActorState_name); err != nil {
		return actorRecord{}, badRecord(BucketActors, key, err)
	}
	if info.GetNumRestarts() < 0 {
		return actorRecord{}, badRecord(BucketActors, key, invalidf("num_restarts", "%d is negative", info.GetNumRestarts()))
	}
	if _, err := checkOptionalID("", "node_id", info.GetNodeId()); err != nil {
		return actorRecord{}, badRecord(BucketActors, key, err)
	}
	if err := checkAddress("address", info.GetAddress()); err != nil {
		return actorRecord{}, badRecord(BucketActors, key, err)
	}
	job, _ := protos.UniqueIDFromBytes(info.GetSpec().GetJobId()) // checked
	return actorRecord{id: id, job: job, info: info}, nil
}

// decodePGRecord decodes a goray_placement_groups record into the
// manager's entry for it.
func decodePGRecord(key string, value []byte) (*pgEntry, error) {
	info := &protos.PlacementGroupInfo{}
	if err := decodeRecord(BucketPlacementGroups, key, value, info); err != nil {
		return nil, err
	}
	spec := info.GetSpec()
	if spec == nil {
		return nil, badRecord(BucketPlacementGroups, key, invalidf("spec", "required"))
	}
	if err := checkPGSpec("spec", spec); err != nil {
		return nil, badRecord(BucketPlacementGroups, key, err)
	}
	g, err := newPGEntry(info)
	if err != nil {
		return nil, badRecord(BucketPlacementGroups, key, err)
	}
	if err := keyedBy(BucketPlacementGroups, key, "spec.placement_group_id", g.id); err != nil {
		return nil, err
	}
	if err := checkEnum("", "state", info.GetState(), protos.PlacementGroupState_name); err != nil {
		return nil, badRecord(BucketPlacementGroups, key, err)
	}
	nodes := info.GetBundleNodes()
	if len(nodes) == 0 {
		return g, nil
	}
	if len(nodes) != len(g.bundles) {
		return nil, badRecord(BucketPlacementGroups, key, invalidf("bundle_nodes", "%d nodes for %d bundles", len(nodes), len(g.bundles)))
	}
	// Endpoints are looked up when needed (cancelAll).
	g.nodes = make([]*protos.NodeInfo, len(nodes))
	for i, n := range nodes {
		if _, err := checkOptionalID("", "bundle_nodes", n); err != nil {
			return nil, badRecord(BucketPlacementGroups, key, err)
		}
		if len(n) > 0 {
			g.nodes[i] = &protos.NodeInfo{NodeId: n}
		}
	}
	return g, nil
}
