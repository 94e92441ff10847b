// Package jobserver is the head's job server, Ray's job submission: it
// runs a submitted entrypoint as a supervised driver process on the head,
// with GORAY_ADDRESS and the cluster's credentials, keeps each job's
// record in the KV bucket goray_submissions and its output in the stream
// goray_job_logs, and answers goray.jobs.* requests (gcs/subjects.go).
//
//	srv, err := jobserver.New(jobserver.Options{NATS: nc, Address: url, TokenFile: tf, Dir: dir, Logger: log})
//	err = srv.Start()
//	defer srv.Shutdown()
//
// Records and output live in JetStream, so they survive the head's
// restart; the drivers do not (they die with the head, as Ray's job
// supervisors do), and a restarted server marks the jobs it finds running
// FAILED.
package jobserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/recordjson"
	"github.com/goray/goray/internal/runtimeenv"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/raylet"
)

// Options configure a Server.
type Options struct {
	// NATS is a connection allowed to serve goray.jobs.*, manage the
	// bucket and stream, and read goray_packages (the GCS role's).
	NATS *nats.Conn
	// Address is what drivers get as GORAY_ADDRESS.
	Address string
	// Env is added to every entrypoint's environment, before the
	// submitter's variables: how drivers authenticate (GORAY_AUTH_TOKEN_FILE
	// or GORAY_AUTH=none, TLS files).
	Env []string
	// Dir holds the jobs' working directories.
	Dir string
	// Replicas of the bucket and stream (0: 1).
	Replicas int
	// LogsMaxBytes bounds the output stream (0: DefaultLogsMaxBytes).
	LogsMaxBytes int64
	// StopGrace is how long a stopped driver has between SIGTERM and
	// SIGKILL (0: DefaultStopGrace).
	StopGrace time.Duration
	Logger    zerolog.Logger
}

// Defaults.
const (
	DefaultLogsMaxBytes = 1 << 30
	DefaultStopGrace    = 3 * time.Second
	// logChunk bounds one stored message of output.
	logChunk = 64 << 10
	// logsReplyBytes bounds one logs reply.
	logsReplyBytes = 512 << 10
	// maxRequestBytes bounds a request (its entrypoint and variables).
	maxRequestBytes = 64 << 10
	opTimeout       = 10 * time.Second
)

// Server is the job server.
type Server struct {
	opts Options
	log  zerolog.Logger
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	logs jetstream.Stream

	mu      sync.Mutex
	jobs    map[string]*protos.Submission
	running map[string]*driver
	svc     micro.Service
	closed  bool
	wg      sync.WaitGroup
}

// driver is a running entrypoint.
type driver struct {
	cmd     *exec.Cmd
	stopped bool
	done    chan struct{}
}

// New checks opts and returns a Server that Start starts.
func New(opts Options) (*Server, error) {
	if opts.NATS == nil || opts.Address == "" || opts.Dir == "" {
		return nil, errors.New("jobserver: Options.NATS, Address and Dir are required")
	}
	if opts.LogsMaxBytes <= 0 {
		opts.LogsMaxBytes = DefaultLogsMaxBytes
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	return &Server{opts: opts, log: opts.Logger.With().Str("component", "jobs").Logger(), jobs: map[string]*protos.Submission{}, running: map[string]*driver{}}, nil
}

// Start opens the bucket and stream, marks the jobs a previous server left
// running FAILED, and serves requests.
func (s *Server) Start() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	js, err := jetstream.New(s.opts.NATS)
	if err != nil {
		return fmt.Errorf("jobserver: %w", err)
	}
	s.js = js
	replicas := max(s.opts.Replicas, 1)
	if s.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: gcs.BucketSubmissions,
		Description: "goray job server: submission id -> Submission", Storage: jetstream.FileStorage, Replicas: replicas}); err != nil {
		return fmt.Errorf("jobserver: bucket %s: %w", gcs.BucketSubmissions, err)
	}
	if s.logs, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: gcs.StreamJobLogs,
		Description: "goray job server: submitted drivers' output, on goray_job_logs.<submission id>",
		Subjects:    []string{gcs.StreamJobLogs + ".*"}, Storage: jetstream.FileStorage, Replicas: replicas,
		MaxBytes: s.opts.LogsMaxBytes, Discard: jetstream.DiscardOld}); err != nil {
		return fmt.Errorf("jobserver: stream %s: %w", gcs.StreamJobLogs, err)
	}
	if err := s.load(ctx); err != nil {
		return err
	}
	// A NATS micro service, as the GCS's managers: `nats micro info
	// goray-jobs` shows its endpoints and their counts.
	svc, err := micro.AddService(s.opts.NATS, micro.Config{Name: "goray-jobs", Version: gcs.ServiceVersion,
		Description: "goray job server: protobuf requests and replies (docs/jobs.md)", QueueGroupDisabled: true})
	if err != nil {
		return fmt.Errorf("jobserver: micro service: %w", err)
	}
	s.svc = svc
	for _, ep := range []struct {
		subject string
		h       micro.HandlerFunc
	}{
		{gcs.SubjectJobSubmit, handle(s, gcs.SubjectJobSubmit, s.submit)},
		{gcs.SubjectJobGet, handle(s, gcs.SubjectJobGet, s.get)},
		{gcs.SubjectJobSubmissions, handle(s, gcs.SubjectJobSubmissions, s.list)},
		{gcs.SubjectJobStop, handle(s, gcs.SubjectJobStop, s.stop)},
		{gcs.SubjectJobDelete, handle(s, gcs.SubjectJobDelete, s.delete)},
		{gcs.SubjectJobLogs, handle(s, gcs.SubjectJobLogs, s.readLogs)},
	} {
		if err := svc.AddEndpoint(ep.subject[strings.LastIndex(ep.subject, ".")+1:], ep.h, micro.WithEndpointSubject(ep.subject)); err != nil {
			s.Shutdown()
			return fmt.Errorf("jobserver: endpoint %s: %w", ep.subject, err)
		}
	}
	return s.opts.NATS.Flush()
}

// load reads the records; a job still PENDING or RUNNING lost its driver
// with the previous server.
func (s *Server) load(ctx context.Context) error {
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("jobserver: list %s: %w", gcs.BucketSubmissions, err)
	}
	for k := range keys.Keys() {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		sub := &protos.Submission{}
		if err := recordjson.Unmarshal(e.Value(), sub); err != nil || sub.GetSubmissionId() != k {
			s.log.Warn().Str("key", k).Msg("skip a malformed submission record")
			continue
		}
		s.jobs[k] = sub
		if st := sub.GetStatus(); st == protos.SubmissionStatus_JOB_PENDING || st == protos.SubmissionStatus_JOB_RUNNING {
			s.ended(sub, protos.SubmissionStatus_JOB_FAILED, "the head stopped while the job ran: its driver died with it", nil)
		}
	}
	return nil
}

// Shutdown stops serving and stops the running drivers (their jobs end
// FAILED: the cluster is going away). It is idempotent.
func (s *Server) Shutdown() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	var running []*driver
	for _, d := range s.running {
		running = append(running, d)
	}
	s.mu.Unlock()
	if s.svc != nil {
		_ = s.svc.Stop()
	}
	for _, d := range running {
		d.signal(syscall.SIGKILL)
	}
	s.wg.Wait()
}

// handle decodes a request, runs f and answers, with errors in the reply's
// GcsError as the GCS's (and as micro service errors, which `nats micro
// stats` counts).
func handle[Req any, PReq interface {
	*Req
	proto.Message
}, Rep proto.Message](s *Server, subject string, f func(PReq) (Rep, error)) micro.HandlerFunc {
	return func(m micro.Request) {
		req := PReq(new(Req))
		// Goray-Encoding: json, as the GCS's requests (gcs.HeaderEncoding).
		decode, encode := proto.Unmarshal, proto.Marshal
		if m.Headers().Get(gcs.HeaderEncoding) == "json" {
			decode, encode = recordjson.Unmarshal, recordjson.Marshal
		}
		var fail error
		var rep proto.Message
		if len(m.Data()) > maxRequestBytes {
			fail = fmt.Errorf("%w: %s: request of %d bytes, more than %d", gcs.ErrInvalid, subject, len(m.Data()), maxRequestBytes)
		} else if err := decode(m.Data(), req); err != nil {
			fail = fmt.Errorf("%w: %s: cannot decode request: %v", gcs.ErrInvalid, subject, err)
		} else if r, err := f(req); err != nil {
			fail = err
		} else {
			rep = r
		}
		var err error
		if fail != nil {
			e := gcs.ReplyError(fail)
			var data []byte
			if data, err = encode(errorReply[Rep](e)); err == nil {
				err = m.Error(e.GetCode(), e.GetMessage(), data)
			}
		} else {
			var data []byte
			if data, err = encode(rep); err == nil {
				err = m.Respond(data)
			}
		}
		if err != nil {
			s.log.Debug().Err(err).Str("subject", subject).Msg("reply")
		}
	}
}

func errorReply[Rep proto.Message](e *protos.GcsError) proto.Message {
	var zero Rep
	rep := zero.ProtoReflect().New().Interface()
	f := rep.ProtoReflect().Descriptor().Fields().ByName("error")
	rep.ProtoReflect().Set(f, protoreflect.ValueOfMessage(e.ProtoReflect()))
	return rep
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func checkID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: submission id %q: want 1 to 64 letters, digits, '-' or '_'", gcs.ErrInvalid, id)
	}
	return nil
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "goray_" + hex.EncodeToString(b)
}

func (s *Server) submit(req *protos.SubmitJobRequest) (*protos.SubmitJobReply, error) {
	id := req.GetSubmissionId()
	if id == "" {
		id = newID()
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	if len(req.GetEntrypoint()) == 0 || req.GetEntrypoint()[0] == "" {
		return nil, fmt.Errorf("%w: entrypoint: required (the command and its arguments)", gcs.ErrInvalid)
	}
	for k := range req.GetEnv() {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("%w: env: invalid variable name %q", gcs.ErrInvalid, k)
		}
	}
	if d := req.GetWorkingDirDigest(); d != "" && !runtimeenv.IsDigest(d) {
		return nil, fmt.Errorf("%w: working_dir_digest %q: want 64 lowercase hex digits", gcs.ErrInvalid, d)
	}
	host, _ := os.Hostname()
	sub := &protos.Submission{SubmissionId: id, Entrypoint: req.GetEntrypoint(), WorkingDirDigest: req.GetWorkingDirDigest(),
		WorkingDirContent: req.GetWorkingDirContent(), Metadata: req.GetMetadata(), Status: protos.SubmissionStatus_JOB_PENDING,
		Host: host, SubmitTimeUnixMs: time.Now().UnixMilli()}
	for k := range req.GetEnv() {
		sub.EnvNames = append(sub.EnvNames, k)
	}
	sort.Strings(sub.EnvNames)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: the job server is shutting down", gcs.ErrUnavailable)
	}
	if _, ok := s.jobs[id]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: submission id %q is taken", gcs.ErrAlreadyExists, id)
	}
	s.jobs[id] = sub
	s.mu.Unlock()
	if err := s.put(sub); err != nil {
		s.mu.Lock()
		delete(s.jobs, id)
		s.mu.Unlock()
		return nil, err
	}
	s.log.Info().Str("submission", id).Strs("entrypoint", sub.GetEntrypoint()).Msg("job submitted")
	s.wg.Add(1)
	go s.run(sub, req.GetEnv())
	return &protos.SubmitJobReply{Submission: proto.CloneOf(sub)}, nil
}

// put stores a record (the caller owns sub until it returns).
func (s *Server) put(sub *protos.Submission) error {
	data, err := recordjson.Marshal(sub)
	if err != nil {
		return fmt.Errorf("%w: %v", gcs.ErrInternal, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := s.kv.Put(ctx, sub.GetSubmissionId(), data); err != nil {
		return fmt.Errorf("%w: store submission %s: %v", gcs.ErrUnavailable, sub.GetSubmissionId(), err)
	}
	return nil
}

// update changes a job's record under the lock and stores it.
func (s *Server) update(id string, change func(*protos.Submission)) *protos.Submission {
	s.mu.Lock()
	old := s.jobs[id]
	if old == nil {
		s.mu.Unlock()
		return nil
	}
	sub := proto.CloneOf(old)
	change(sub)
	s.jobs[id] = sub
	s.mu.Unlock()
	if err := s.put(sub); err != nil {
		s.log.Warn().Err(err).Str("submission", id).Msg("store the job's new status")
	}
	return sub
}

// ended records a job's end.
func (s *Server) ended(sub *protos.Submission, status protos.SubmissionStatus, msg string, exit *int) {
	s.update(sub.GetSubmissionId(), func(j *protos.Submission) {
		j.Status, j.Message, j.EndTimeUnixMs = status, msg, time.Now().UnixMilli()
		if exit != nil {
			j.Exited, j.ExitCode = true, int32(*exit)
		}
	})
	s.log.Info().Str("submission", sub.GetSubmissionId()).Str("status", status.String()).Str("message", msg).Msg("job ended")
}

// run prepares the job's working directory, starts its driver and waits
// for it.
func (s *Server) run(sub *protos.Submission, env map[string]string) {
	defer s.wg.Done()
	id := sub.GetSubmissionId()
	out := s.newLogWriter(id)
	defer out.Close()
	dir, err := s.workingDir(sub)
	if err != nil {
		fmt.Fprintf(out, "goray: %v\n", err)
		s.ended(sub, protos.SubmissionStatus_JOB_FAILED, err.Error(), nil)
		return
	}
	cmd := exec.Command(sub.GetEntrypoint()[0], sub.GetEntrypoint()[1:]...)
	cmd.Dir = dir
	cmd.Env = s.driverEnv(sub, env)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a stop reaches what it started; killed
	// if the head dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	d := &driver{cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.ended(sub, protos.SubmissionStatus_JOB_FAILED, "the head stopped before the job started", nil)
		return
	}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		fmt.Fprintf(out, "goray: start %s: %v\n", sub.GetEntrypoint()[0], err)
		s.ended(sub, protos.SubmissionStatus_JOB_FAILED, fmt.Sprintf("start %s: %v", sub.GetEntrypoint()[0], err), nil)
		return
	}
	s.running[id] = d
	s.mu.Unlock()
	s.update(id, func(j *protos.Submission) {
		j.Status, j.DriverPid, j.StartTimeUnixMs, j.Message = protos.SubmissionStatus_JOB_RUNNING, int32(cmd.Process.Pid), time.Now().UnixMilli(), ""
	})
	err = cmd.Wait()
	close(d.done)
	s.mu.Lock()
	delete(s.running, id)
	stopped, closed := d.stopped, s.closed
	s.mu.Unlock()
	out.Flush()
	code := cmd.ProcessState.ExitCode()
	var exit *int
	if cmd.ProcessState.Exited() { // not killed by a signal
		exit = &code
	}
	switch {
	case stopped:
		s.ended(sub, protos.SubmissionStatus_JOB_STOPPED, "stopped on request", exit)
	case err == nil:
		s.ended(sub, protos.SubmissionStatus_JOB_SUCCEEDED, "", exit)
	case closed:
		s.ended(sub, protos.SubmissionStatus_JOB_FAILED, "the cluster shut down while the job ran", exit)
	default:
		s.ended(sub, protos.SubmissionStatus_JOB_FAILED, fmt.Sprintf("the entrypoint %s", describeExit(cmd.ProcessState)), exit)
	}
}

func describeExit(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "was killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with code %d", ps.ExitCode())
}

// driverEnv is the entrypoint's environment: the head's, without its
// token, then how to reach the cluster, then the submitter's variables.
func (s *Server) driverEnv(sub *protos.Submission, user map[string]string) []string {
	id := sub.GetSubmissionId()
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, auth.EnvToken+"=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GORAY_ADDRESS="+s.opts.Address, "GORAY_SUBMISSION_ID="+id)
	if d := sub.GetWorkingDirDigest(); d != "" {
		env = append(env, fmt.Sprintf("%s=%s:%d", raylet.EnvJobPackage, d, sub.GetWorkingDirContent()))
	}
	env = append(env, s.opts.Env...)
	names := make([]string, 0, len(user))
	for k := range user {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		env = append(env, k+"="+user[k])
	}
	return env
}

// workingDir fetches and unpacks the job's working directory package, or
// returns the server's directory for jobs without one.
func (s *Server) workingDir(sub *protos.Submission) (string, error) {
	digest := sub.GetWorkingDirDigest()
	base := filepath.Join(s.opts.Dir, "job_working_dirs")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	if digest == "" {
		return base, nil
	}
	dir := filepath.Join(base, sub.GetSubmissionId())
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, err := gcs.OpenPackages(ctx, s.opts.NATS)
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	pr, pw := io.Pipe()
	fetchErr := make(chan error, 1)
	go func() {
		err := store.Fetch(ctx, gcs.PackageObject(digest), pw)
		pw.CloseWithError(err)
		fetchErr <- err
	}()
	_, err = runtimeenv.Unpack(pr, dir, 0, digest)
	_ = pr.Close()
	if ferr := <-fetchErr; ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		return "", fmt.Errorf("working directory package %s: %w", digest[:12], err)
	}
	return dir, nil
}

func (s *Server) get(req *protos.GetSubmissionRequest) (*protos.GetSubmissionReply, error) {
	sub, err := s.lookup(req.GetSubmissionId())
	if err != nil {
		return nil, err
	}
	return &protos.GetSubmissionReply{Submission: sub}, nil
}

func (s *Server) lookup(id string) (*protos.Submission, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.jobs[id]
	if sub == nil {
		return nil, fmt.Errorf("%w: no job submitted as %q", gcs.ErrNotFound, id)
	}
	return proto.CloneOf(sub), nil
}

func (s *Server) list(*protos.ListSubmissionsRequest) (*protos.ListSubmissionsReply, error) {
	s.mu.Lock()
	out := make([]*protos.Submission, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, proto.CloneOf(j))
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *protos.Submission) int {
		if c := a.GetSubmitTimeUnixMs() - b.GetSubmitTimeUnixMs(); c != 0 {
			return int(c)
		}
		return strings.Compare(a.GetSubmissionId(), b.GetSubmissionId())
	})
	return &protos.ListSubmissionsReply{Submissions: out}, nil
}

func (s *Server) stop(req *protos.StopJobRequest) (*protos.StopJobReply, error) {
	if _, err := s.lookup(req.GetSubmissionId()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	d := s.running[req.GetSubmissionId()]
	if d != nil {
		d.stopped = true
	}
	s.mu.Unlock()
	if d == nil {
		return &protos.StopJobReply{Stopped: false}, nil
	}
	d.signal(syscall.SIGTERM)
	go func() {
		select {
		case <-d.done:
		case <-time.After(s.opts.StopGrace):
			d.signal(syscall.SIGKILL)
		}
	}()
	return &protos.StopJobReply{Stopped: true}, nil
}

// signal signals the driver's process group.
func (d *driver) signal(sig syscall.Signal) {
	if p := d.cmd.Process; p != nil {
		_ = syscall.Kill(-p.Pid, sig)
	}
}

func (s *Server) delete(req *protos.DeleteSubmissionRequest) (*protos.DeleteSubmissionReply, error) {
	sub, err := s.lookup(req.GetSubmissionId())
	if err != nil {
		return nil, err
	}
	if st := sub.GetStatus(); st == protos.SubmissionStatus_JOB_PENDING || st == protos.SubmissionStatus_JOB_RUNNING {
		return nil, fmt.Errorf("%w: job %s is %s: stop it first", gcs.ErrInvalid, sub.GetSubmissionId(), strings.TrimPrefix(st.String(), "JOB_"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	id := sub.GetSubmissionId()
	if err := s.logs.Purge(ctx, jetstream.WithPurgeSubject(gcs.JobLogsSubject(id))); err != nil {
		return nil, fmt.Errorf("%w: delete the output of %s: %v", gcs.ErrUnavailable, id, err)
	}
	if err := s.kv.Delete(ctx, id); err != nil {
		return nil, fmt.Errorf("%w: delete %s: %v", gcs.ErrUnavailable, id, err)
	}
	_ = os.RemoveAll(filepath.Join(s.opts.Dir, "job_working_dirs", id))
	s.mu.Lock()
	delete(s.jobs, id)
	s.mu.Unlock()
	return &protos.DeleteSubmissionReply{}, nil
}

// readLogs answers the job's output from stream sequence req.From on, up
// to logsReplyBytes.
func (s *Server) readLogs(req *protos.JobLogsRequest) (*protos.JobLogsReply, error) {
	sub, err := s.lookup(req.GetSubmissionId())
	if err != nil {
		return nil, err
	}
	ended := sub.GetStatus() != protos.SubmissionStatus_JOB_PENDING && sub.GetStatus() != protos.SubmissionStatus_JOB_RUNNING
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rep := &protos.JobLogsReply{Next: max(req.GetFrom(), 1)}
	var buf bytes.Buffer
	for buf.Len() < logsReplyBytes {
		msg, err := s.logs.GetMsg(ctx, rep.Next, jetstream.WithGetMsgSubject(gcs.JobLogsSubject(sub.GetSubmissionId())))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			rep.Done = ended
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: read the output of %s: %v", gcs.ErrUnavailable, sub.GetSubmissionId(), err)
		}
		buf.Write(msg.Data)
		rep.Next = msg.Sequence + 1
	}
	rep.Data = buf.Bytes()
	return rep, nil
}
