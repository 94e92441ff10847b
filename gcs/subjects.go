package gcs

import (
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/recordjson"
	"github.com/goray/goray/protos"
)

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

	SubjectActorRegister = "goray.gcs.actor.register" // RegisterActorRequest -> RegisterActorReply
	SubjectActorGet      = "goray.gcs.actor.get"      // GetActorRequest -> GetActorReply
	SubjectActorList     = "goray.gcs.actor.list"     // ListActorsRequest -> ListActorsReply
	SubjectActorKill     = "goray.gcs.actor.kill"     // KillActorGcsRequest -> KillActorGcsReply

	SubjectPGCreate = "goray.gcs.pg.create" // CreatePlacementGroupRequest -> CreatePlacementGroupReply
	SubjectPGGet    = "goray.gcs.pg.get"    // GetPlacementGroupRequest -> GetPlacementGroupReply
	SubjectPGRemove = "goray.gcs.pg.remove" // RemovePlacementGroupRequest -> RemovePlacementGroupReply
	SubjectPGList   = "goray.gcs.pg.list"   // ListPlacementGroupsRequest -> ListPlacementGroupsReply

	SubjectClusterInfo     = "goray.gcs.cluster.info"     // ClusterInfoRequest -> ClusterInfoReply
	SubjectClusterShutdown = "goray.gcs.cluster.shutdown" // ShutdownRequest -> ShutdownReply

	// SubjectNodeReports is the wildcard the GCS (and every raylet)
	// listens on for the NodeReport each raylet publishes on
	// NodeReportSubject(its id), every second: the nodes' heartbeats. They
	// are outside goray.> so that an operator's `nats sub 'goray.>'` shows
	// the cluster's events and requests, not a heartbeat a second per node.
	SubjectNodeReports = "goray_reports.node.*"

	// Events the GCS publishes (plain publish, no reply): a NodeInfo when a
	// node registers (ALIVE) or dies/unregisters (DEAD); a JobInfo when a
	// job registers or finishes; an ActorInfo on every state change of an
	// actor (also published on ActorSubject(its id)).
	SubjectNodeEvents  = "goray.events.node"
	SubjectJobEvents   = "goray.events.job"
	SubjectActorEvents = "goray.events.actor"
	// SubjectShutdownEvents carries an empty message when the cluster is
	// asked to shut down: worker nodes (goray start --address) stop.
	SubjectShutdownEvents = "goray.events.shutdown"
	// SubjectPGEvents matches every PlacementGroupSubject: raylets learn
	// of removed groups there.
	SubjectPGEvents = "goray.pg.*"
)

// JetStream KV buckets holding the GCS's persistent state.
const (
	BucketNodes     = "goray_nodes"     // key: node id (hex) -> NodeInfo
	BucketJobs      = "goray_jobs"      // key: job id (hex) -> JobInfo
	BucketFunctions = "goray_functions" // key: job id (hex) -> FunctionTable
	BucketKV        = "goray_kv"        // key: kvKey(namespace, key) -> raw value
	BucketActors    = "goray_actors"    // key: actor id (hex) -> ActorInfo
	// key: placement group id (hex) -> PlacementGroupInfo (live groups)
	BucketPlacementGroups = "goray_placement_groups"
)

// NodeReportSubject is where the raylet of node id publishes its NodeReport.
func NodeReportSubject(id protos.NodeID) string {
	return "goray_reports.node." + id.String()
}

// Task events. Every process of a job publishes its TaskEventBatch
// messages on TaskEventsSubject(job), outside goray.> like the heartbeats
// (they are binary and frequent); the job's stream TaskEventsStream(job),
// which the task manager creates when the job registers, keeps them.
const (
	taskEventsPrefix = "goray_tasks."
	// SubjectTaskEvents matches every job's TaskEventsSubject.
	SubjectTaskEvents = taskEventsPrefix + "*"
	// TaskEventsStreamPrefix starts the name of every job's stream.
	TaskEventsStreamPrefix = "goray_tasks_"

	SubjectTaskList      = "goray.gcs.task.list"      // ListTasksRequest -> ListTasksReply
	SubjectTaskSummarize = "goray.gcs.task.summarize" // SummarizeTasksRequest -> SummarizeTasksReply
)

// Job submission subjects, served by the head's job server
// (internal/jobserver), not by the GCS: the head runs submitted drivers.
const (
	SubjectJobSubmit      = "goray.jobs.submit" // SubmitJobRequest -> SubmitJobReply
	SubjectJobGet         = "goray.jobs.get"    // GetSubmissionRequest -> GetSubmissionReply
	SubjectJobSubmissions = "goray.jobs.list"   // ListSubmissionsRequest -> ListSubmissionsReply
	SubjectJobStop        = "goray.jobs.stop"   // StopJobRequest -> StopJobReply
	SubjectJobDelete      = "goray.jobs.delete" // DeleteSubmissionRequest -> DeleteSubmissionReply
	SubjectJobLogs        = "goray.jobs.logs"   // JobLogsRequest -> JobLogsReply

	// BucketSubmissions holds the job server's records: submission id ->
	// Submission.
	BucketSubmissions = "goray_submissions"
	// StreamJobLogs keeps submitted drivers' output on
	// JobLogsSubject(submission id).
	StreamJobLogs = "goray_job_logs"
)

// JobLogsSubject is where the job server stores a submitted driver's
// output.
func JobLogsSubject(submissionID string) string { return StreamJobLogs + "." + submissionID }

// ReplyError is the wire form of an error made with this package's
// sentinels, for servers beside the GCS (the job server) whose replies
// the Client decodes the same way.
func ReplyError(err error) *protos.GcsError {
	if err == nil {
		return nil
	}
	return toGcsError(err)
}

// TaskEventsSubject is where job's processes publish their task events.
func TaskEventsSubject(job protos.JobID) string { return taskEventsPrefix + job.String() }

// TaskEventsStream names job's task event stream.
func TaskEventsStream(job protos.JobID) string { return TaskEventsStreamPrefix + job.String() }

// ActorSubject is where the GCS publishes the ActorInfo of actor id on each
// of its state changes: callers watch it to learn the actor's address
// (ALIVE), that it is RESTARTING, or DEAD.
func ActorSubject(id protos.UniqueID) string {
	return "goray.actor." + id.String()
}

// eventsPrefix starts the subjects of the events the GCS publishes as JSON.
const eventsPrefix = "goray.events."

// DecodeEvent reads an event or record the GCS published or stored: JSON
// (goray.events.>, the KV buckets), or binary protobuf (the per-actor and
// per-group subjects, and records stored before JSON).
func DecodeEvent(data []byte, m proto.Message) error { return recordjson.Unmarshal(data, m) }

// Header names used on replies whose protobuf type has no error field
// (ShutdownReply): the error travels in headers instead.
const (
	HeaderErrorCode    = "Goray-Error-Code"
	HeaderErrorMessage = "Goray-Error"
)
