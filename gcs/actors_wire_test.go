package gcs

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/digest"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/goray/goray/raylet"
)

// exeDigest is the binary digest a driver registers for exe.
func exeDigest(t *testing.T, exe string) string {
	t.Helper()
	d, err := digest.File(exe)
	must(t, err)
	return d
}

// TestMain makes the test binary a stand-in actor worker when a raylet
// under test starts it (raylet.EnvWorker set). It speaks only the wire
// protocol the GCS uses with an actor's worker; the real worker loop is
// the sdk's.
func TestMain(m *testing.M) {
	if os.Getenv(raylet.EnvWorker) == "1" {
		os.Exit(fakeActorWorker())
	}
	os.Exit(m.Run())
}

// Classes the stand-in worker knows.
const (
	fakeClassOK      = "Counter"
	fakeClassFailing = "Failing" // the constructor returns an error
	fakeClassExiting = "Exiting" // the actor exits itself right after creation
)

func fakeActorWorker() int {
	idHex := os.Getenv(raylet.EnvWorkerID)
	id, err := hex.DecodeString(idHex)
	if err != nil || len(idHex) < 8 {
		return 2
	}
	fd, err := strconv.Atoi(os.Getenv(auth.EnvCredentialsFD))
	if err != nil {
		return 6
	}
	creds, err := auth.ReadWorkerCredentials(uintptr(fd))
	if err != nil {
		return 7
	}
	hs := creds.Handshaker(auth.LabelWire)
	endpoint := "unix:" + filepath.Join(os.Getenv(raylet.EnvSessionDir), "sockets", "w-"+idHex[:8]+".sock")
	raw, err := wire.Listen(endpoint)
	if err != nil {
		return 3
	}
	l := auth.NewListener(raw, hs, auth.Limits{}, zerolog.Nop())
	h := wire.HandlerFunc(func(c *wire.Conn, req *wire.Request) {
		switch req.Method {
		case protos.Method_CREATE_ACTOR:
			m := &protos.CreateActorRequest{}
			if err := proto.Unmarshal(req.Payload, m); err != nil {
				_ = c.ReplyError(req, err)
				return
			}
			switch m.GetSpec().GetClassName() {
			case fakeClassFailing:
				_ = c.Reply(req, &protos.CreateActorReply{Error: &protos.TaskErrorProto{Kind: protos.ErrorKind_ERROR_KIND_TASK, Function: fakeClassFailing, Message: "constructor failed on purpose", Pid: int32(os.Getpid())}})
			case fakeClassExiting:
				_ = c.Reply(req, &protos.CreateActorReply{})
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = c.Call(ctx, protos.Method_ACTOR_EXITED, &protos.ActorExitedRequest{ActorId: m.GetSpec().GetActorId(), Reason: "bye"}, &protos.ActorExitedReply{})
					os.Exit(0)
				}()
			default:
				_ = c.Reply(req, &protos.CreateActorReply{})
			}
		case protos.Method_KILL_ACTOR:
			_ = c.Reply(req, &protos.KillActorReply{})
			go func() {
				_ = c.Close() // flushes the reply
				os.Exit(0)
			}()
		default:
			_ = c.ReplyError(req, wire.NewError(wire.CodeUnimplemented, "fake worker: %v", req.Method))
		}
	})
	srv := wire.NewServer(l, h)
	go func() { _ = srv.Serve() }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := wire.Dial(ctx, os.Getenv(raylet.EnvRaylet), nil, wire.WithAuthenticator(hs))
	if err != nil {
		return 4
	}
	if err := rc.Call(ctx, protos.Method_REGISTER_WORKER, &protos.RegisterWorkerRequest{WorkerId: id, Pid: int32(os.Getpid()), Endpoint: endpoint}, &protos.RegisterWorkerReply{}); err != nil {
		return 5
	}
	<-rc.Done()
	return 0
}

func processGone(pid int32) bool {
	return errors.Is(syscall.Kill(int(pid), 0), syscall.ESRCH)
}

// TestActorsOnRealRaylet runs the actor manager with its wire placer
// against a real raylet whose workers are the stand-in above.
func TestActorsOnRealRaylet(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	must(t, err)
	res, err := raylet.FromMap(map[string]float64{raylet.CPU: 2})
	must(t, err)
	r, err := raylet.New(raylet.Config{
		Credentials:       testCreds,
		SessionDir:        t.TempDir(),
		Resources:         res,
		ObjectStoreMemory: 16 << 20,
		MaxWorkers:        1,
		Logger:            testLogger(t).With().Str("component", "raylet").Logger(),
		ReportInterval:    time.Hour,
	})
	must(t, err)
	must(t, r.Start())
	t.Cleanup(r.Shutdown)

	ctx := ctxT(t)
	driver, err := wire.Dial(ctx, r.Endpoint(), nil, wire.WithAuthenticator(testCreds.Handshaker(auth.LabelWire)))
	must(t, err)
	t.Cleanup(func() { _ = driver.Close() })
	job := protos.NewUniqueID()
	must(t, driver.Call(ctx, protos.Method_REGISTER_CLIENT, &protos.RegisterClientRequest{JobId: job.Bytes(), Executable: exe, BinaryDigest: exeDigest(t, exe)}, &protos.RegisterClientReply{}))

	srv := runServer(t, Options{NodeTimeout: time.Minute})
	c := dial(t, srv.ClientURL())
	node := r.NodeInfo()
	must(t, c.RegisterNode(ctx, node))
	availCPU := func() float64 { return r.NodeInfo().GetAvailable().GetAmounts()[raylet.CPU] }

	env := &actorEnv{srv: srv, c: c, ctx: ctx}
	owner := &protos.Address{NodeId: node.GetNodeId()}

	// An actor that crashes restarts on a fresh worker; kill(no_restart)
	// ends it and its process.
	spec := actorSpec(job, fakeClassOK, &protos.ActorOptions{MaxRestarts: 1, RunningResources: &protos.Resources{}})
	spec.Owner = owner
	events := env.watch(t, spec)
	_, err = c.RegisterActor(ctx, spec)
	must(t, err)
	expectState(t, events, protos.ActorState_PENDING_CREATION)
	alive := expectState(t, events, protos.ActorState_ALIVE)
	pid1 := alive.GetAddress().GetPid()
	if pid1 == 0 || alive.GetAddress().GetEndpoint() == "" || len(alive.GetLeaseId()) == 0 {
		t.Fatalf("ALIVE: %v", alive)
	}
	// Placed with 1 CPU, running with none.
	if got := availCPU(); got != 2 {
		t.Errorf("available CPU with a running actor = %v, want 2", got)
	}

	must(t, syscall.Kill(int(pid1), syscall.SIGKILL))
	info := expectState(t, events, protos.ActorState_RESTARTING)
	if !strings.Contains(info.GetDeathCause(), "died") || info.GetNumRestarts() != 1 {
		t.Fatalf("RESTARTING: %v", info)
	}
	alive = expectState(t, events, protos.ActorState_ALIVE)
	pid2 := alive.GetAddress().GetPid()
	if pid2 == pid1 {
		t.Fatalf("restarted on the dead worker's pid %d", pid1)
	}
	must(t, c.KillActor(ctx, protos.MustUniqueID(spec.GetActorId()), true))
	info = expectState(t, events, protos.ActorState_DEAD)
	if info.GetDeathCause() != deathKilled {
		t.Fatalf("DEAD: %v", info)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !processGone(pid2) {
			return errors.New("killed actor's worker still runs")
		}
		return nil
	})

	// A failing constructor.
	failing := actorSpec(job, fakeClassFailing, nil)
	failing.Owner = owner
	fe := env.watch(t, failing)
	_, err = c.RegisterActor(ctx, failing)
	must(t, err)
	expectState(t, fe, protos.ActorState_PENDING_CREATION)
	info = expectState(t, fe, protos.ActorState_DEAD)
	if info.GetCreationError().GetMessage() != "constructor failed on purpose" {
		t.Fatalf("DEAD after constructor error: %v", info)
	}

	// An actor that exits itself.
	exiting := actorSpec(job, fakeClassExiting, &protos.ActorOptions{MaxRestarts: -1})
	exiting.Owner = owner
	ee := env.watch(t, exiting)
	_, err = c.RegisterActor(ctx, exiting)
	must(t, err)
	expectState(t, ee, protos.ActorState_PENDING_CREATION)
	expectState(t, ee, protos.ActorState_ALIVE)
	info = expectState(t, ee, protos.ActorState_DEAD)
	if info.GetDeathCause() != "the actor exited itself: bye" {
		t.Fatalf("DEAD after exit: %v", info)
	}

	// Every lease went back: the node's CPUs are all available again.
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := availCPU(); got != 2 {
			return errors.New("leases not all returned")
		}
		return nil
	})
}
