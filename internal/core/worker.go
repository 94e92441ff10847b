package core

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/objstore"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// IsWorker reports whether this process was started by goray as a worker.
func IsWorker() bool { return os.Getenv(raylet.EnvWorker) == "1" }

// WorkerMain runs the worker loop and exits if this process was started by
// goray as a worker; otherwise it returns at once. Init calls it; a test
// binary whose tests use goray calls it first thing in TestMain, since its
// workers re-run the test binary.
func WorkerMain() {
	if !IsWorker() {
		return
	}
	log := zerolog.New(os.Stderr).With().Timestamp().Str("worker_pid", fmt.Sprint(os.Getpid())).Logger().Level(logLevel(zerolog.WarnLevel))
	if err := runWorker(log); err != nil {
		log.Error().Err(err).Msg("goray worker failed")
		os.Exit(1)
	}
	os.Exit(0)
}

func runWorker(log zerolog.Logger) error {
	ids := map[string]protos.UniqueID{}
	for _, k := range []string{raylet.EnvJobID, raylet.EnvWorkerID, raylet.EnvNodeID} {
		id, err := parseHexID(os.Getenv(k))
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		ids[k] = id
	}
	creds, err := workerCredentials()
	if err != nil {
		return err
	}
	cw := newWorker(log, true, ids[raylet.EnvJobID], ids[raylet.EnvWorkerID], creds)
	if err := cw.listen(raylet.SocketDir(os.Getenv(raylet.EnvSessionDir)), os.Getenv(raylet.EnvNodeIP)); err != nil {
		return err
	}
	// Known before registering: tasks may arrive as soon as the raylet
	// has the registration, before its reply reaches us.
	cw.setup(func(b *nodeBinding) { b.setNode(ids[raylet.EnvNodeID]) })
	cw.gcsAddress = os.Getenv(raylet.EnvGCSAddress)
	if enc := os.Getenv(raylet.EnvRuntimeEnv); enc != "" {
		// The runtime env this worker runs with: its tasks' and actors'
		// unless they set their own.
		env := &protos.RuntimeEnv{}
		data, err := base64.StdEncoding.DecodeString(enc)
		if err == nil {
			err = proto.Unmarshal(data, env)
		}
		if err != nil {
			return fmt.Errorf("goray worker: %s: %w", raylet.EnvRuntimeEnv, err)
		}
		cw.ownEnv = env
	}
	cw.namespace = os.Getenv(raylet.EnvNamespace)
	if cw.namespace == "" {
		cw.namespace = "default"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cw.dial(ctx, os.Getenv(raylet.EnvRaylet))
	if err != nil {
		return fmt.Errorf("connect to raylet: %w", err)
	}
	cw.setup(func(b *nodeBinding) { b.raylet = c })
	seg, err := objstore.OpenSegment(os.Getenv(raylet.EnvStorePath))
	if err != nil {
		return fmt.Errorf("map object store: %w", err)
	}
	cw.setup(func(b *nodeBinding) { b.seg, b.store = seg, rayletStore{c} })
	cw.ownSeg = true
	cur.Store(cw)
	var reply protos.RegisterWorkerReply
	if err := c.Call(ctx, protos.Method_REGISTER_WORKER, &protos.RegisterWorkerRequest{
		WorkerId: cw.workerID.Bytes(), Pid: int32(os.Getpid()), Endpoint: cw.node().addr.GetEndpoint(), TcpEndpoint: cw.node().addr.GetTcpEndpoint(), JobId: cw.jobID.Bytes(), FunctionDigest: cw.digest,
	}, &reply); err != nil {
		return fmt.Errorf("register with raylet: %w", err)
	}
	// The raylet closing our connection means the node or the job is over.
	<-c.Done()
	cw.close()
	return nil
}

// workerCredentials reads the credentials the raylet handed this worker on
// the file descriptor GORAY_CREDENTIALS_FD names (a pipe, read once).
func workerCredentials() (*auth.Credentials, error) {
	v := os.Getenv(auth.EnvCredentialsFD)
	_ = os.Unsetenv(auth.EnvCredentialsFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: want the file descriptor of the credentials the raylet handed this worker", auth.EnvCredentialsFD, v)
	}
	return auth.ReadWorkerCredentials(uintptr(fd))
}

func parseHexID(s string) (protos.UniqueID, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return protos.UniqueID{}, fmt.Errorf("bad id %q: %w", s, err)
	}
	return protos.UniqueIDFromBytes(b)
}
