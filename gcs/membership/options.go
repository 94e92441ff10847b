package membership

import (
	"fmt"
	"regexp"
	"time"

	"github.com/rs/zerolog"
)

const (
	// DefaultBucket is the KV bucket of the member table.
	DefaultBucket = "goray_members"
	// DefaultTTL is how long a member stays without heart-beating.
	DefaultTTL = 10 * time.Second
	// MinTTL is the shortest TTL accepted. The server keeps expiry markers
	// for whole seconds (at least one) and scans for expired messages at
	// most every 250 ms, so a shorter TTL could not be honoured.
	MinTTL = time.Second
	// maxReplicas is JetStream's limit on stream replicas.
	maxReplicas = 5
)

// Options configures a Registry. The zero value is usable.
type Options struct {
	// Bucket is the KV bucket; default DefaultBucket.
	Bucket string
	// TTL is how long a member stays listed without heart-beating, and so
	// bounds how long a crashed member is still seen (plus the server's
	// expiry scan, about 250 ms). It is the bucket's MaxAge, shared by
	// every member; default DefaultTTL, at least MinTTL.
	TTL time.Duration
	// Heartbeat is how often a member refreshes its key; default TTL/3, so
	// two refreshes in a row may fail before the member expires. Must be
	// shorter than TTL.
	Heartbeat time.Duration
	// Replicas of the bucket's stream: 1 by default, 3 on an HA NATS
	// cluster.
	Replicas int
	Logger   zerolog.Logger
}

// bucketName is what JetStream accepts as a KV bucket name.
var bucketName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// withDefaults fills in defaults and rejects options that cannot work,
// naming the offending field so a misconfigured daemon says why at start.
func (o Options) withDefaults() (Options, error) {
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if !bucketName.MatchString(o.Bucket) {
		return o, fmt.Errorf("%w: bucket name %q: only letters, digits, '-' and '_' are allowed", ErrInvalidOptions, o.Bucket)
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.TTL < MinTTL {
		return o, fmt.Errorf("%w: TTL %s is below the minimum %s", ErrInvalidOptions, o.TTL, MinTTL)
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = o.TTL / 3
	}
	if o.Heartbeat < 0 {
		return o, fmt.Errorf("%w: Heartbeat %s is negative", ErrInvalidOptions, o.Heartbeat)
	}
	if o.Heartbeat >= o.TTL {
		return o, fmt.Errorf("%w: Heartbeat %s must be shorter than TTL %s, or members expire between refreshes", ErrInvalidOptions, o.Heartbeat, o.TTL)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Replicas < 1 || o.Replicas > maxReplicas {
		return o, fmt.Errorf("%w: Replicas %d: want 1 to %d", ErrInvalidOptions, o.Replicas, maxReplicas)
	}
	return o, nil
}

// markerTTL is how long the server keeps the marker it writes when a
// member expires. The server counts it in whole seconds, and the bucket's
// MaxAge removes markers after TTL anyway, so TTL rounded up is all a
// longer value could give.
func (o Options) markerTTL() time.Duration {
	return ((o.TTL + time.Second - 1) / time.Second) * time.Second
}
