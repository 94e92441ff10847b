package gcs

import "github.com/goray/goray/protos"

// NATS subjects served or used by the GCS. Requests and replies are
// protobuf messages from package protos; docs/nats.md lists the message
// type for each subject.
const (
	SubjectNodeRegister   = "goray.gcs.node.register"   // RegisterNodeRequest -> RegisterNodeReply
	SubjectNodeUnregister = "goray.gcs.node.unregister" // UnregisterNodeRequest -> UnregisterNodeReply
	SubjectNodeList       = "goray.gcs.node.list"       // ListNodesRequest -> ListNodesReply

	SubjectJobRegister = "goray.gcs.job.register" // RegisterJobRequest -> RegisterJobReply
	SubjectJobFinish   = "goray.gcs.job.finish"   // FinishJobRequest -> FinishJobReply
	SubjectJobList     = "goray.gcs.job.list"     // ListJobsRequest -> ListJobsReply

	SubjectFuncRegister = "goray.gcs.func.register" // RegisterFunctionsRequest -> RegisterFunctionsReply
	SubjectFuncGet      = "goray.gcs.func.get"      // GetFunctionsRequest -> GetFunctionsReply

	SubjectKVPut    = "goray.gcs.kv.put"    // KVPutRequest -> KVPutReply
	SubjectKVGet    = "goray.gcs.kv.get"    // KVGetRequest -> KVGetReply
	SubjectKVDelete = "goray.gcs.kv.delete" // KVDeleteRequest -> KVDeleteReply
	SubjectKVKeys   = "goray.gcs.kv.keys"   // KVKeysRequest -> KVKeysReply

	SubjectClusterInfo     = "goray.gcs.cluster.info"     // ClusterInfoRequest -> ClusterInfoReply
	SubjectClusterShutdown = "goray.gcs.cluster.shutdown" // ShutdownRequest -> ShutdownReply

	// SubjectNodeReports is the wildcard the GCS listens on for the
	// NodeReport each raylet publishes on NodeReportSubject(its id).
	SubjectNodeReports = "goray.node.*.report"

	// Events the GCS publishes (plain publish, no reply): a NodeInfo when a
	// node registers (ALIVE) or dies/unregisters (DEAD); a JobInfo when a
	// job registers or finishes.
	SubjectNodeEvents = "goray.events.node"
	SubjectJobEvents  = "goray.events.job"
)

// JetStream KV buckets holding the GCS's persistent state.
const (
	BucketNodes     = "goray_nodes"     // key: node id (hex) -> NodeInfo
	BucketJobs      = "goray_jobs"      // key: job id (hex) -> JobInfo
	BucketFunctions = "goray_functions" // key: job id (hex) -> FunctionTable
	BucketKV        = "goray_kv"        // key: kvKey(namespace, key) -> raw value
)

// NodeReportSubject is where the raylet of node id publishes its NodeReport.
func NodeReportSubject(id protos.NodeID) string {
	return "goray.node." + id.String() + ".report"
}

// Header names used on replies whose protobuf type has no error field
// (ShutdownReply): the error travels in headers instead.
const (
	HeaderErrorCode    = "Goray-Error-Code"
	HeaderErrorMessage = "Goray-Error"
)
