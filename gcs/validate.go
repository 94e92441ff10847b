package gcs

import (
	"fmt"
	"strings"

	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
)

// Requests reach the GCS from any process holding cluster credentials, and
// its records from a bucket an operator can write to, so every field the
// GCS acts on or keeps is checked first (validate_requests.go,
// records.go). A bad request is answered with an ErrInvalid GcsError
// naming the subject and the field; a bad record is skipped. The checks are
// comparisons on the decoded message that allocate only when they fail,
// since node reports and KV requests run them at a high rate.

// Bounds on what one request or record may make the GCS hold. They are
// generous for real clusters and match the raylet's (raylet/validate.go,
// raylet/resources.go) where both read the same field, so the GCS never
// accepts what every raylet will refuse.
const (
	// maxMessageBytes bounds a request or record before it is decoded, so
	// that a NATS server with a large max_payload (an operator's, up to
	// 64 MiB) cannot make one message allocate without bound. The embedded
	// server's max_payload (1 MiB) is well below it.
	maxMessageBytes = 8 << 20

	// maxNameBytes bounds names: actors, placement groups, namespaces,
	// classes, functions, hosts, labels.
	maxNameBytes = 1 << 10
	// maxPathBytes bounds paths and endpoints (PATH_MAX).
	maxPathBytes = 4 << 10
	// maxDigestBytes bounds a digest (a SHA-256 is 64 hex digits).
	maxDigestBytes = 256
	// maxSignatureBytes bounds a function's Go signature, which spells out
	// any struct types in it.
	maxSignatureBytes = 16 << 10

	// KV keys become NATS subjects ($KV.goray_kv.<b64 ns>.<b64 key>), and a
	// publish whose subject does not fit NATS's control line (4 KiB by
	// default) is a protocol error that closes the GCS's connection. Base64
	// makes 1 KiB + 256 B of raw bytes about 1.7 KiB of subject. Ray's own
	// keys are far shorter.
	maxKVNamespaceBytes = 256
	maxKVKeyBytes       = 1 << 10
	// maxKVValueBytes is the embedded NATS's max_payload: a larger value
	// could not be stored there anyway.
	maxKVValueBytes = 1 << 20

	// maxResourceQuantity is the largest quantity of one resource, in
	// natural units (raylet.MaxResourceQuantity): 100 TB of "memory" in
	// bytes fits, and so do sums of thousands of such quantities in the
	// int64 fixed point of scheduling.Unit, which a larger value would
	// overflow into negative amounts.
	maxResourceQuantity = 1e14
	// maxResourceNameBytes bounds a resource name (placement group
	// resources, the longest goray makes, take about 60 bytes).
	maxResourceNameBytes = 256
	// maxDemandResources bounds the resources of one demand (an actor's,
	// a bundle's): the raylet refuses a lease with more.
	maxDemandResources = 1 << 10
	// maxNodeResources bounds a node's resource maps, which hold a few
	// entries per committed placement group bundle besides the node's own.
	maxNodeResources = 1 << 16
	// maxDemandShapes bounds a node report's pending and infeasible
	// lists, one entry per distinct shape queued at the raylet.
	maxDemandShapes = 1 << 14

	// maxLabels bounds a label map or selector; maxLabelValues the values
	// one selector key accepts.
	maxLabels      = 1 << 10
	maxLabelValues = 1 << 10

	// maxBundles bounds a placement group: a STRICT_PACK group reserves
	// all of its bundles in one PREPARE_BUNDLES, which the raylet caps at
	// this many.
	maxBundles = 4096
	// maxFunctions bounds a job's function table.
	maxFunctions = 1 << 16
	// maxEnvEntries bounds a job's environment, which every worker of the
	// job starts with (the raylet's bound; exec fails far below it).
	maxEnvEntries = 1 << 14
	// maxEnvEntryBytes is Linux's MAX_ARG_STRLEN: exec refuses a longer
	// entry.
	maxEnvEntryBytes = 128 << 10
	// maxActorArgs bounds an actor constructor's arguments, kept in the
	// actor's record and sent again on every restart.
	maxActorArgs = 1 << 12
	// maxConcurrencyGroups and maxGroupMethods bound an actor's
	// concurrency groups and the methods they name in all.
	maxConcurrencyGroups = 1 << 10
	maxGroupMethods      = 1 << 16
)

// invalidf reports a field of a request or record that the GCS cannot
// take: the error wraps ErrInvalid and starts with the field's path.
func invalidf(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// fieldPath joins a message's path and one of its fields. Callers build paths
// only once a check has failed, so valid requests allocate nothing here.
func fieldPath(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// checkID parses a required, non-zero id field.
func checkID(prefix, field string, b []byte) (protos.UniqueID, error) {
	id, err := protos.UniqueIDFromBytes(b)
	if err != nil {
		return id, invalidf(fieldPath(prefix, field), "%v", err)
	}
	if id.IsZero() {
		return id, invalidf(fieldPath(prefix, field), "id is all zero")
	}
	return id, nil
}

// checkOptionalID parses an id field that may be left empty (the zero id).
func checkOptionalID(prefix, field string, b []byte) (protos.UniqueID, error) {
	if len(b) == 0 {
		return protos.UniqueID{}, nil
	}
	return checkID(prefix, field, b)
}

// checkLen bounds a string or bytes field.
func checkLen[T ~string | ~[]byte](prefix, field string, s T, limit int) error {
	if len(s) > limit {
		return invalidf(fieldPath(prefix, field), "%d bytes, more than the limit of %d", len(s), limit)
	}
	return nil
}

// checkRequired is checkLen for a field that must not be empty.
func checkRequired(prefix, field, s string, limit int) error {
	if s == "" {
		return invalidf(fieldPath(prefix, field), "required")
	}
	return checkLen(prefix, field, s, limit)
}

// checkCount bounds a repeated or map field.
func checkCount(prefix, field string, n, limit int) error {
	if n > limit {
		return invalidf(fieldPath(prefix, field), "%d entries, more than the limit of %d", n, limit)
	}
	return nil
}

// checkEnum rejects a number the enum does not define: protobuf keeps
// unknown enum numbers, and a switch on the value would then fall through
// to whatever its default is.
func checkEnum[E ~int32](prefix, field string, v E, names map[int32]string) error {
	if _, ok := names[int32(v)]; !ok {
		return invalidf(fieldPath(prefix, field), "unknown value %d", int32(v))
	}
	return nil
}

// checkEndpoint validates an optional endpoint the GCS may dial.
func checkEndpoint(prefix, field, endpoint string) error {
	if endpoint == "" {
		return nil
	}
	if err := checkLen(prefix, field, endpoint, maxPathBytes); err != nil {
		return err
	}
	if _, _, err := wire.ParseEndpoint(endpoint); err != nil {
		return invalidf(fieldPath(prefix, field), "%v", err)
	}
	return nil
}

// quantity says which resource quantities a map may hold.
type quantity int

const (
	nonNegative quantity = iota // demands and node totals
	// signed: a node's available resources, which go negative while the
	// raylet is oversubscribed (a blocked worker resumed).
	signed
)

// checkResources validates a resource map: at most limit names, each
// non-empty and bounded, and finite quantities within
// maxResourceQuantity.
func checkResources(prefix, field string, r *protos.Resources, limit int, q quantity) error {
	amounts := r.GetAmounts()
	if len(amounts) > limit {
		return invalidf(fieldPath(prefix, field), "%d resources, more than the limit of %d", len(amounts), limit)
	}
	for name, v := range amounts {
		if err := checkResourceName(prefix, field, name); err != nil {
			return err
		}
		lo := 0.0
		if q == signed {
			lo = -maxResourceQuantity
		}
		// Written so that NaN fails too.
		if !(v >= lo && v <= maxResourceQuantity) {
			return invalidf(fieldPath(prefix, field), "resource %q: quantity %v is not a number in [%g, %g]", name, v, lo, float64(maxResourceQuantity))
		}
	}
	return nil
}

func checkResourceName(prefix, field, name string) error {
	switch {
	case name == "":
		return invalidf(fieldPath(prefix, field), "resource with an empty name")
	case len(name) > maxResourceNameBytes:
		return invalidf(fieldPath(prefix, field), "resource name of %d bytes, more than the limit of %d", len(name), maxResourceNameBytes)
	}
	return nil
}

// checkLabels validates a node's labels.
func checkLabels(prefix, field string, labels map[string]string) error {
	if err := checkCount(prefix, field, len(labels), maxLabels); err != nil {
		return err
	}
	for k, v := range labels {
		switch {
		case k == "":
			return invalidf(fieldPath(prefix, field), "label with an empty name")
		case len(k) > maxNameBytes || len(v) > maxNameBytes:
			return invalidf(fieldPath(prefix, field), "label %.64q: name or value longer than %d bytes", k, maxNameBytes)
		}
	}
	return nil
}

// checkLabelSelector validates a label selector: each key names a label
// and accepts at least one value (what scheduling.StrategyFromProto
// requires).
func checkLabelSelector(prefix, field string, sel map[string]*protos.LabelValues) error {
	if err := checkCount(prefix, field, len(sel), maxLabels); err != nil {
		return err
	}
	for k, vs := range sel {
		values := vs.GetValues()
		switch {
		case k == "":
			return invalidf(fieldPath(prefix, field), "selector with an empty label name")
		case len(k) > maxNameBytes:
			return invalidf(fieldPath(prefix, field), "label name of %d bytes, more than the limit of %d", len(k), maxNameBytes)
		case len(values) == 0:
			return invalidf(fieldPath(prefix, field), "label %.64q: no value to match", k)
		case len(values) > maxLabelValues:
			return invalidf(fieldPath(prefix, field), "label %.64q: %d values, more than the limit of %d", k, len(values), maxLabelValues)
		}
		for _, v := range values {
			if len(v) > maxNameBytes {
				return invalidf(fieldPath(prefix, field), "label %.64q: value of %d bytes, more than the limit of %d", k, len(v), maxNameBytes)
			}
		}
	}
	return nil
}

// checkEnv validates a job's environment: NAME=value entries that exec
// can take.
func checkEnv(prefix, field string, env []string) error {
	if err := checkCount(prefix, field, len(env), maxEnvEntries); err != nil {
		return err
	}
	for i, kv := range env {
		switch name, _, ok := strings.Cut(kv, "="); {
		case !ok || name == "":
			return invalidf(fieldPath(prefix, field), "entry %d is not NAME=value", i)
		case len(kv) > maxEnvEntryBytes:
			return invalidf(fieldPath(prefix, field), "entry %d has %d bytes, more than the limit of %d", i, len(kv), maxEnvEntryBytes)
		case strings.IndexByte(kv, 0) >= 0:
			return invalidf(fieldPath(prefix, field), "entry %d contains a NUL byte", i)
		}
	}
	return nil
}
