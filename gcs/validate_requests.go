package gcs

import (
	"math"

	"github.com/goray/goray/internal/runtimeenv"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet/scheduling"
)

// One check per request type, run by the subject's handler after decoding
// and before the request reaches its manager (serveFunc). Each returns nil
// or an error wrapping ErrInvalid whose message starts with the path of the
// bad field; the handler adds the subject. Requests with no fields
// (listings, ClusterInfoRequest, ShutdownRequest) have no check.

// --- nodes ---

func checkRegisterNode(r *protos.RegisterNodeRequest) error {
	if r.GetNode() == nil {
		return invalidf("node", "required")
	}
	return checkNodeInfo("node", r.GetNode())
}

func checkUnregisterNode(r *protos.UnregisterNodeRequest) error {
	_, err := checkID("", "node_id", r.GetNodeId())
	return err
}

// checkNodeReport validates a raylet's periodic report, which replaces the
// node's record in memory.
func checkNodeReport(r *protos.NodeReport) error {
	if r.GetNode() == nil {
		return invalidf("node", "required")
	}
	return checkNodeInfo("node", r.GetNode())
}

// checkNodeInfo validates a node's record, as registered, reported or
// stored.
func checkNodeInfo(prefix string, n *protos.NodeInfo) error {
	if _, err := checkID(prefix, "node_id", n.GetNodeId()); err != nil {
		return err
	}
	if err := checkEnum(prefix, "state", n.GetState(), protos.NodeInfo_State_name); err != nil {
		return err
	}
	// The GCS dials these (actor_placer.go).
	if err := checkEndpoint(prefix, "raylet_endpoint", n.GetRayletEndpoint()); err != nil {
		return err
	}
	if err := checkEndpoint(prefix, "raylet_tcp_endpoint", n.GetRayletTcpEndpoint()); err != nil {
		return err
	}
	for _, f := range [...]struct {
		name  string
		value string
		limit int
	}{
		{"hostname", n.GetHostname(), maxNameBytes},
		{"store_path", n.GetStorePath(), maxPathBytes},
		{"session_dir", n.GetSessionDir(), maxPathBytes},
		{"transfer_address", n.GetTransferAddress(), maxPathBytes},
		{"store_stats.spill_dir", n.GetStoreStats().GetSpillDir(), maxPathBytes},
	} {
		if err := checkLen(prefix, f.name, f.value, f.limit); err != nil {
			return err
		}
	}
	if err := checkResources(prefix, "total", n.GetTotal(), maxNodeResources, nonNegative); err != nil {
		return err
	}
	if err := checkResources(prefix, "available", n.GetAvailable(), maxNodeResources, signed); err != nil {
		return err
	}
	if err := checkLabels(prefix, "labels", n.GetLabels()); err != nil {
		return err
	}
	if err := checkDemands(prefix, "pending", n.GetPending()); err != nil {
		return err
	}
	return checkDemands(prefix, "infeasible", n.GetInfeasible())
}

func checkDemands(prefix, field string, ds []*protos.ResourceDemand) error {
	if err := checkCount(prefix, field, len(ds), maxDemandShapes); err != nil {
		return err
	}
	for _, d := range ds {
		if d.GetCount() < 0 {
			return invalidf(fieldPath(prefix, field), "negative count %d", d.GetCount())
		}
		if err := checkResources(prefix, field, d.GetShape(), maxDemandResources, nonNegative); err != nil {
			return err
		}
		if err := checkLabelSelector(prefix, field, d.GetLabels()); err != nil {
			return err
		}
	}
	return nil
}

// --- jobs and function tables ---

func checkRegisterJob(r *protos.RegisterJobRequest) error {
	if r.GetJob() == nil {
		return invalidf("job", "required")
	}
	return checkJobInfo("job", r.GetJob())
}

// checkJobInfo validates a job's record, as registered or stored. Every
// raylet starts the job's workers from its executable, directory and
// environment.
func checkJobInfo(prefix string, j *protos.JobInfo) error {
	if _, err := checkID(prefix, "job_id", j.GetJobId()); err != nil {
		return err
	}
	if j.GetDriverPid() < 0 {
		return invalidf(fieldPath(prefix, "driver_pid"), "%d is negative", j.GetDriverPid())
	}
	for _, f := range [...]struct {
		name  string
		value string
		limit int
	}{
		{"executable", j.GetExecutable(), maxPathBytes},
		{"working_dir", j.GetWorkingDir(), maxPathBytes},
		{"driver_host", j.GetDriverHost(), maxNameBytes},
		{"namespace", j.GetNamespace(), maxNameBytes},
		{"function_digest", j.GetFunctionDigest(), maxDigestBytes},
		{"binary_digest", j.GetBinaryDigest(), maxDigestBytes},
	} {
		if err := checkLen(prefix, f.name, f.value, f.limit); err != nil {
			return err
		}
	}
	if err := runtimeenv.CheckRuntimeEnv(j.GetRuntimeEnv()); err != nil {
		return invalidf(fieldPath(prefix, "runtime_env"), "%v", err)
	}
	if err := runtimeenv.CheckBinaries(j.GetBinaries()); err != nil {
		return invalidf(fieldPath(prefix, "binaries"), "%v", err)
	}
	return checkEnv(prefix, "env", j.GetEnv())
}

func checkFinishJob(r *protos.FinishJobRequest) error {
	_, err := checkID("", "job_id", r.GetJobId())
	return err
}

func checkRegisterFunctions(r *protos.RegisterFunctionsRequest) error {
	if r.GetTable() == nil {
		return invalidf("table", "required")
	}
	return checkFunctionTable("table", r.GetTable())
}

// checkFunctionTable validates a job's function table, as registered or
// stored.
func checkFunctionTable(prefix string, t *protos.FunctionTable) error {
	if _, err := checkID(prefix, "job_id", t.GetJobId()); err != nil {
		return err
	}
	if err := checkLen(prefix, "digest", t.GetDigest(), maxDigestBytes); err != nil {
		return err
	}
	fns := t.GetFunctions()
	if err := checkCount(prefix, "functions", len(fns), maxFunctions); err != nil {
		return err
	}
	for _, f := range fns {
		if len(f.GetName()) > maxNameBytes || len(f.GetSignature()) > maxSignatureBytes {
			return invalidf(fieldPath(prefix, "functions"), "function %.64q: name or signature longer than %d or %d bytes", f.GetName(), maxNameBytes, maxSignatureBytes)
		}
	}
	return nil
}

func checkGetFunctions(r *protos.GetFunctionsRequest) error {
	_, err := checkID("", "job_id", r.GetJobId())
	return err
}

// --- internal KV ---

func checkKVPut(r *protos.KVPutRequest) error {
	if err := checkKVKey(r.GetNamespace(), r.GetKey()); err != nil {
		return err
	}
	return checkLen("", "value", r.GetValue(), maxKVValueBytes)
}

// checkKVKey validates a key to store under: the empty key cannot be
// stored (Ray's internal_kv_put refuses it too).
func checkKVKey(namespace, key string) error {
	if err := checkLen("", "namespace", namespace, maxKVNamespaceBytes); err != nil {
		return err
	}
	return checkRequired("", "key", key, maxKVKeyBytes)
}

// checkKVLookup validates the key of a get or delete; a key no put could
// have stored is refused rather than reported missing.
func checkKVLookup(namespace, key string) error {
	if err := checkLen("", "namespace", namespace, maxKVNamespaceBytes); err != nil {
		return err
	}
	return checkLen("", "key", key, maxKVKeyBytes)
}

func checkKVGet(r *protos.KVGetRequest) error { return checkKVLookup(r.GetNamespace(), r.GetKey()) }

func checkKVDelete(r *protos.KVDeleteRequest) error {
	return checkKVLookup(r.GetNamespace(), r.GetKey())
}

func checkKVKeys(r *protos.KVKeysRequest) error {
	return checkKVLookup(r.GetNamespace(), r.GetPrefix())
}

// --- actors ---

// CheckActorSpec applies the checks the GCS makes of an actor
// registration, for a client that registers without waiting for the
// answer.
func CheckActorSpec(spec *protos.ActorSpec) error {
	if spec == nil {
		return invalidf("spec", "required")
	}
	return checkActorSpec("spec", spec)
}

func checkRegisterActor(r *protos.RegisterActorRequest) error {
	if r.GetSpec() == nil {
		return invalidf("spec", "required")
	}
	return checkActorSpec("spec", r.GetSpec())
}

func checkGetActor(r *protos.GetActorRequest) error {
	if len(r.GetActorId()) > 0 {
		_, err := checkID("", "actor_id", r.GetActorId())
		return err
	}
	if r.GetName() == "" {
		return invalidf("actor_id", "an actor id or a name is required")
	}
	if err := checkLen("", "name", r.GetName(), maxNameBytes); err != nil {
		return err
	}
	return checkLen("", "namespace", r.GetNamespace(), maxNameBytes)
}

func checkListActors(r *protos.ListActorsRequest) error {
	_, err := checkOptionalID("", "job_id", r.GetJobId())
	return err
}

// maxTaskFilters bounds a task listing's filters.
const maxTaskFilters = 32

func checkListTasks(r *protos.ListTasksRequest) error {
	if _, err := checkOptionalID("", "job_id", r.GetJobId()); err != nil {
		return err
	}
	if n := len(r.GetFilters()); n > maxTaskFilters {
		return invalidf("filters", "%d of them, at most %d", n, maxTaskFilters)
	}
	return nil
}

func checkSummarizeTasks(r *protos.SummarizeTasksRequest) error {
	_, err := checkOptionalID("", "job_id", r.GetJobId())
	return err
}

func checkKillActor(r *protos.KillActorGcsRequest) error {
	_, err := checkID("", "actor_id", r.GetActorId())
	return err
}

// checkActorSpec checks what the GCS and the raylet rely on, as registered
// or stored; the worker checks the rest (that the class exists, argument
// types).
func checkActorSpec(prefix string, spec *protos.ActorSpec) error {
	if _, err := checkID(prefix, "actor_id", spec.GetActorId()); err != nil {
		return err
	}
	if _, err := checkID(prefix, "job_id", spec.GetJobId()); err != nil {
		return err
	}
	if err := checkRequired(prefix, "class_name", spec.GetClassName(), maxNameBytes); err != nil {
		return err
	}
	if err := checkLen(prefix, "function_digest", spec.GetFunctionDigest(), maxDigestBytes); err != nil {
		return err
	}
	if err := checkArgs(prefix, "args", spec.GetArgs()); err != nil {
		return err
	}
	if err := checkAddress(fieldPath(prefix, "owner"), spec.GetOwner()); err != nil {
		return err
	}
	return checkActorOptions(fieldPath(prefix, "options"), spec.GetOptions())
}

// checkArgs bounds an actor's constructor arguments and checks the
// encodings the worker will switch on.
func checkArgs(prefix, field string, args []*protos.TaskArg) error {
	if err := checkCount(prefix, field, len(args), maxActorArgs); err != nil {
		return err
	}
	for _, a := range args {
		v := a.GetValue()
		if err := checkEnum(prefix, field, v.GetEncoding(), protos.Encoding_name); err != nil {
			return err
		}
		if err := checkEnum(prefix, field, v.GetNumericKind(), protos.NumericKind_name); err != nil {
			return err
		}
	}
	return nil
}

// checkAddress validates an optional process address.
func checkAddress(prefix string, a *protos.Address) error {
	if a == nil {
		return nil
	}
	if _, err := checkOptionalID(prefix, "worker_id", a.GetWorkerId()); err != nil {
		return err
	}
	if _, err := checkOptionalID(prefix, "node_id", a.GetNodeId()); err != nil {
		return err
	}
	if err := checkEndpoint(prefix, "endpoint", a.GetEndpoint()); err != nil {
		return err
	}
	if a.GetPid() < 0 {
		return invalidf(fieldPath(prefix, "pid"), "%d is negative", a.GetPid())
	}
	return checkEndpoint(prefix, "tcp_endpoint", a.GetTcpEndpoint())
}

func checkActorOptions(prefix string, o *protos.ActorOptions) error {
	switch {
	case o.GetMaxRestarts() < -1:
		return invalidf(fieldPath(prefix, "max_restarts"), "must be -1 (no limit) or >= 0, not %d", o.GetMaxRestarts())
	case o.GetMaxTaskRetries() < -1:
		return invalidf(fieldPath(prefix, "max_task_retries"), "must be -1 (no limit) or >= 0, not %d", o.GetMaxTaskRetries())
	case o.GetMaxConcurrency() < 0:
		return invalidf(fieldPath(prefix, "max_concurrency"), "must be >= 0, not %d", o.GetMaxConcurrency())
	case o.GetMaxPendingCalls() < 0:
		return invalidf(fieldPath(prefix, "max_pending_calls"), "must be >= 0 (0: no limit), not %d", o.GetMaxPendingCalls())
	case o.GetGetIfExists() && o.GetName() == "":
		return invalidf(fieldPath(prefix, "get_if_exists"), "needs a name")
	}
	if err := checkLen(prefix, "name", o.GetName(), maxNameBytes); err != nil {
		return err
	}
	if err := checkLen(prefix, "namespace", o.GetNamespace(), maxNameBytes); err != nil {
		return err
	}
	if err := checkResources(prefix, "placement_resources", o.GetPlacementResources(), maxDemandResources, nonNegative); err != nil {
		return err
	}
	if err := checkResources(prefix, "running_resources", o.GetRunningResources(), maxDemandResources, nonNegative); err != nil {
		return err
	}
	if err := checkStrategy(fieldPath(prefix, "strategy"), o.GetStrategy()); err != nil {
		return err
	}
	if err := runtimeenv.CheckRuntimeEnv(o.GetRuntimeEnv()); err != nil {
		return invalidf(fieldPath(prefix, "runtime_env"), "%v", err)
	}
	return checkConcurrencyGroups(prefix, "concurrency_groups", o.GetConcurrencyGroups())
}

// checkStrategy validates where an actor may be placed: the ids its kind
// needs must be there, since an actor that could never be placed would
// only die later.
func checkStrategy(prefix string, st *protos.SchedulingStrategy) error {
	if st == nil {
		return nil
	}
	if err := checkEnum(prefix, "kind", st.GetKind(), protos.SchedulingStrategy_Kind_name); err != nil {
		return err
	}
	switch st.GetKind() {
	case protos.SchedulingStrategy_NODE_AFFINITY:
		if _, err := checkID(prefix, "node_id", st.GetNodeId()); err != nil {
			return err
		}
	case protos.SchedulingStrategy_PLACEMENT_GROUP:
		if _, err := checkID(prefix, "placement_group_id", st.GetPlacementGroupId()); err != nil {
			return err
		}
		if i := st.GetBundleIndex(); i < -1 || i >= maxBundles {
			return invalidf(fieldPath(prefix, "bundle_index"), "%d is not -1 (any bundle) or a bundle's index", i)
		}
	}
	return checkLabelSelector(prefix, "labels", st.GetLabels())
}

func checkConcurrencyGroups(prefix, field string, groups []*protos.ConcurrencyGroup) error {
	if err := checkCount(prefix, field, len(groups), maxConcurrencyGroups); err != nil {
		return err
	}
	if len(groups) == 0 {
		return nil
	}
	names := make(map[string]bool, len(groups))
	methods := map[string]string{}
	for _, g := range groups {
		name := g.GetName()
		switch {
		case name == "":
			return invalidf(fieldPath(prefix, field), "concurrency group with an empty name")
		case len(name) > maxNameBytes:
			return invalidf(fieldPath(prefix, field), "group name of %d bytes, more than the limit of %d", len(name), maxNameBytes)
		case names[name]:
			return invalidf(fieldPath(prefix, field), "concurrency group %q defined twice", name)
		case g.GetMaxConcurrency() < 1:
			return invalidf(fieldPath(prefix, field), "concurrency group %q: max_concurrency must be >= 1, not %d", name, g.GetMaxConcurrency())
		}
		names[name] = true
		if len(methods)+len(g.GetMethods()) > maxGroupMethods {
			return invalidf(fieldPath(prefix, field), "more than %d methods in all", maxGroupMethods)
		}
		for _, meth := range g.GetMethods() {
			if len(meth) > maxNameBytes {
				return invalidf(fieldPath(prefix, field), "method name of %d bytes, more than the limit of %d", len(meth), maxNameBytes)
			}
			if other, ok := methods[meth]; ok {
				return invalidf(fieldPath(prefix, field), "method %q is in concurrency groups %q and %q", meth, other, name)
			}
			methods[meth] = name
		}
	}
	return nil
}

// --- placement groups ---

func checkCreatePG(r *protos.CreatePlacementGroupRequest) error {
	if r.GetSpec() == nil {
		return invalidf("spec", "required")
	}
	return checkPGSpec("spec", r.GetSpec())
}

func checkGetPG(r *protos.GetPlacementGroupRequest) error {
	if r.GetName() != "" {
		if err := checkLen("", "name", r.GetName(), maxNameBytes); err != nil {
			return err
		}
		return checkLen("", "namespace", r.GetNamespace(), maxNameBytes)
	}
	_, err := checkID("", "placement_group_id", r.GetPlacementGroupId())
	return err
}

func checkRemovePG(r *protos.RemovePlacementGroupRequest) error {
	_, err := checkID("", "placement_group_id", r.GetPlacementGroupId())
	return err
}

// checkPGSpec validates a placement group, as created or stored: what
// scheduling.BundlesFromAmounts and PGStrategyFromProto accept, within
// bounds, and with each resource's sum over the bundles (what STRICT_PACK
// reserves on one node) representable too.
func checkPGSpec(prefix string, spec *protos.PlacementGroupSpec) error {
	if _, err := checkID(prefix, "placement_group_id", spec.GetPlacementGroupId()); err != nil {
		return err
	}
	// A group without a job is removed only explicitly.
	if _, err := checkOptionalID(prefix, "job_id", spec.GetJobId()); err != nil {
		return err
	}
	if err := checkLen(prefix, "name", spec.GetName(), maxNameBytes); err != nil {
		return err
	}
	if err := checkLen(prefix, "namespace", spec.GetNamespace(), maxNameBytes); err != nil {
		return err
	}
	if err := checkEnum(prefix, "strategy", spec.GetStrategy(), protos.PlacementStrategy_name); err != nil {
		return err
	}
	bundles := spec.GetBundles()
	switch {
	case len(bundles) == 0:
		return invalidf(fieldPath(prefix, "bundles"), "a placement group needs at least one bundle")
	case len(bundles) > maxBundles:
		return invalidf(fieldPath(prefix, "bundles"), "%d bundles, more than the limit of %d", len(bundles), maxBundles)
	}
	var sums map[string]float64
	if len(bundles) > 1 {
		sums = make(map[string]float64, len(bundles[0].GetAmounts()))
	}
	for i, b := range bundles {
		amounts := b.GetAmounts()
		switch {
		case len(amounts) == 0:
			return invalidf(fieldPath(prefix, "bundles"), "bundle %d is empty", i)
		case len(amounts) > maxDemandResources:
			return invalidf(fieldPath(prefix, "bundles"), "bundle %d: %d resources, more than the limit of %d", i, len(amounts), maxDemandResources)
		}
		for name, v := range amounts {
			if err := checkResourceName(prefix, "bundles", name); err != nil {
				return err
			}
			// Written so that NaN fails too.
			if !(v > 0 && v <= maxResourceQuantity) || math.Round(v*scheduling.Unit) == 0 {
				return invalidf(fieldPath(prefix, "bundles"), "bundle %d: resource %q: amount %v is not a number in [%g, %g]", i, name, v, 1.0/scheduling.Unit, float64(maxResourceQuantity))
			}
			if sums != nil {
				if sums[name] += v; sums[name] > maxResourceQuantity {
					return invalidf(fieldPath(prefix, "bundles"), "resource %q: the bundles add up to more than %g", name, float64(maxResourceQuantity))
				}
			}
		}
	}
	return nil
}
