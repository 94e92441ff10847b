package auth

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Role is who a NATS connection acts for. On the embedded NATS server each
// role is an nkey user whose seed is derived from the cluster token, with
// the permissions below: least privilege, so a worker's credentials (all a
// worker holds) cannot stop the cluster, forge node deaths or write the
// GCS's buckets, and the read-only operator user can look at everything
// and change nothing.
type Role string

// The roles.
const (
	// RoleGCS is the GCS's own connection: it serves every request and
	// publishes every event.
	RoleGCS Role = "gcs"
	// RoleNode is a node daemon's raylet: it reports, heart-beats in the
	// membership bucket, publishes its workers' logs and object frees.
	RoleNode Role = "node"
	// RoleAdmin is the goray CLI: what a driver may do, and stop the
	// cluster.
	RoleAdmin Role = "admin"
	// RoleDriver is a driver that joined a running cluster.
	RoleDriver Role = "driver"
	// RoleWorker is a worker process.
	RoleWorker Role = "worker"
	// RoleOps is the read-only operator (`goray nats-creds --read-only`):
	// it may subscribe to everything, read every bucket and ask the GCS's
	// list and get subjects, and publish nothing else.
	RoleOps Role = "ops"
)

// Roles lists every role.
var Roles = []Role{RoleGCS, RoleNode, RoleAdmin, RoleDriver, RoleWorker, RoleOps}

// NATSKey is the nkey of role, derived from the token.
func (t Token) NATSKey(role Role) (nkeys.KeyPair, error) {
	seed := t.derive("nats/" + string(role))
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, seed[:])
	if err != nil {
		return nil, fmt.Errorf("auth: nkey of role %s: %w", role, err)
	}
	return kp, nil
}

// NATSUsers returns the users of an embedded NATS server: every role's
// nkey with its permissions.
func NATSUsers(t Token) ([]*server.NkeyUser, error) {
	users := make([]*server.NkeyUser, 0, len(Roles))
	for _, r := range Roles {
		kp, err := t.NATSKey(r)
		if err != nil {
			return nil, err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("auth: nkey of role %s: %w", r, err)
		}
		users = append(users, &server.NkeyUser{Nkey: pub, Permissions: Permissions(r)})
	}
	return users, nil
}

// Subjects the permissions name. They mirror gcs/subjects.go and the
// membership package (which this package cannot import); docs/nats.md and
// docs/security.md list them.
const (
	subjGCS            = "goray.gcs.>"
	subjShutdown       = "goray.gcs.cluster.shutdown"
	subjNodeRegister   = "goray.gcs.node.register"
	subjNodeUnregister = "goray.gcs.node.unregister"
	subjReports        = "goray_reports.node.*"
	subjReportsAll     = "goray_reports.>"
	subjLogs           = "goray.logs.>"
	subjObjects        = "goray.objects.>"
	subjTaskEvents     = "goray_tasks.*"
	subjJobs           = "goray.jobs.>"
	subjAll            = "goray.>"
	inbox              = "_INBOX.>"

	membersStream = "KV_goray_members"
	// The runtime env packages object store (gcs.BucketPackages).
	packagesBucket = "goray_packages"
	packagesStream = "OBJ_" + packagesBucket
)

// Permissions returns what role may publish and subscribe to; nil (for
// the GCS) means everything.
func Permissions(role Role) *server.Permissions {
	sub := &server.SubjectPermission{Allow: []string{subjAll, inbox}}
	switch role {
	case RoleGCS:
		return nil
	case RoleNode:
		return &server.Permissions{
			Publish: &server.SubjectPermission{
				// Task events: an embedded cluster's driver publishes
				// them on its node's connection.
				Allow: concat([]string{subjGCS, subjReports, subjLogs, subjObjects, subjTaskEvents}, membersAPI(), packagesRead()),
				Deny:  []string{subjShutdown},
			},
			// Raylets keep their cluster view from each other's reports.
			Subscribe: &server.SubjectPermission{Allow: []string{subjAll, inbox, subjReportsAll}},
		}
	case RoleAdmin:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: concat([]string{subjGCS, subjJobs}, packagesRead(), packagesWrite()), Deny: []string{subjNodeRegister, subjNodeUnregister}},
			Subscribe: sub,
		}
	case RoleDriver, RoleWorker:
		return &server.Permissions{
			// Task events go straight into their job's stream.
			Publish:   &server.SubjectPermission{Allow: concat([]string{subjGCS, subjTaskEvents, subjJobs}, packagesRead(), packagesWrite()), Deny: []string{subjShutdown, subjNodeRegister, subjNodeUnregister}},
			Subscribe: sub,
		}
	case RoleOps:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{
				"goray.gcs.*.list", "goray.gcs.*.get", "goray.gcs.task.summarize", "goray.gcs.kv.keys", "goray.gcs.cluster.info",
				"goray.jobs.list", "goray.jobs.get", "goray.jobs.logs",
				// NATS micro discovery (`nats micro ls|info|stats`).
				"$SRV.PING", "$SRV.PING.>", "$SRV.INFO", "$SRV.INFO.>", "$SRV.STATS", "$SRV.STATS.>",
				// Reading JetStream: account and stream info, messages
				// by sequence or subject, and ephemeral consumers (what
				// `nats kv get|ls|history|watch` and `nats stream
				// view` use). Durable consumers, stream changes, deletes
				// and KV writes ($KV.>) are not allowed.
				"$JS.API.INFO",
				"$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
				"$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
				"$JS.API.CONSUMER.CREATE.*", "$JS.API.CONSUMER.CREATE.*.*.>",
				"$JS.API.CONSUMER.INFO.*.*", "$JS.API.CONSUMER.NAMES.*", "$JS.API.CONSUMER.LIST.*",
				"$JS.API.CONSUMER.DELETE.*.*", "$JS.API.CONSUMER.MSG.NEXT.*.*",
				"$JS.FC.>",
			}},
			Subscribe: &server.SubjectPermission{Allow: []string{">"}},
		}
	}
	// An unknown role may do nothing.
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: []string{">"}},
		Subscribe: &server.SubjectPermission{Deny: []string{">"}},
	}
}

// membersAPI is what a node needs of the membership bucket: read its
// state, put, update and delete its own record (KV writes are publishes
// on $KV.<bucket>.<key>), and watch it.
func membersAPI() []string {
	return []string{
		"$JS.API.STREAM.INFO." + membersStream,
		"$JS.API.STREAM.MSG.GET." + membersStream,
		"$JS.API.DIRECT.GET." + membersStream + ".>",
		"$JS.API.CONSUMER.CREATE." + membersStream,
		"$JS.API.CONSUMER.CREATE." + membersStream + ".>",
		"$JS.API.CONSUMER.DELETE." + membersStream + ".>",
		"$JS.FC." + membersStream + ".>",
		"$KV.goray_members.>",
	}
}

// packagesRead is what fetching from the packages object store takes:
// bind to its stream, read an object's record, and read its chunks with an
// ordered consumer (created, flow-controlled, deleted).
func packagesRead() []string {
	return []string{
		"$JS.API.STREAM.INFO." + packagesStream,
		"$JS.API.STREAM.MSG.GET." + packagesStream,
		"$JS.API.DIRECT.GET." + packagesStream + ".>",
		"$JS.API.CONSUMER.CREATE." + packagesStream,
		"$JS.API.CONSUMER.CREATE." + packagesStream + ".>",
		"$JS.API.CONSUMER.INFO." + packagesStream + ".>",
		"$JS.API.CONSUMER.DELETE." + packagesStream + ".>",
		"$JS.FC." + packagesStream + ".>",
	}
}

// packagesWrite is what uploading takes: publish chunks and the object's
// record, and purge the chunks of a failed upload (or of the copy a
// concurrent upload of the same content replaced). Packages are named by
// their content and every reader checks it, so a writer can spoil an
// upload, never substitute one.
func packagesWrite() []string {
	return []string{
		"$O." + packagesBucket + ".C.>",
		"$O." + packagesBucket + ".M.>",
		"$JS.API.STREAM.PURGE." + packagesStream,
	}
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
