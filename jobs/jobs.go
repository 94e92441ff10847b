// Package jobs submits programs to a goray cluster and follows them: the
// Go client of the head's job server (Ray's JobSubmissionClient). The job
// server runs each submitted entrypoint as a driver process on the head,
// with GORAY_ADDRESS and the cluster's credentials set, records its status
// and keeps its output; both outlive the job and a restart of the head.
//
//	c, err := jobs.Connect(ctx, "auto")
//	defer c.Close()
//	job, err := c.Submit(ctx, jobs.SubmitOptions{Entrypoint: []string{"./mydriver", "-n", "10"}, WorkingDir: "."})
//	job, err = c.Wait(ctx, job.SubmissionID)       // SUCCEEDED, FAILED or STOPPED
//	out, err := c.Logs(ctx, job.SubmissionID)
//
// `goray job submit|status|logs|stop|list|delete` are this package's
// calls.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/goray/goray/gcs"
	"github.com/goray/goray/internal/auth"
	"github.com/goray/goray/internal/localcluster"
	"github.com/goray/goray/internal/runtimeenv"
	"github.com/goray/goray/protos"
)

// Status is a submitted job's status.
type Status string

// Statuses, in the order a job goes through them.
const (
	Pending   Status = "PENDING"
	Running   Status = "RUNNING"
	Succeeded Status = "SUCCEEDED"
	Failed    Status = "FAILED"
	Stopped   Status = "STOPPED"
)

// Ended reports whether the job has ended.
func (s Status) Ended() bool { return s == Succeeded || s == Failed || s == Stopped }

// Job is a submitted job.
type Job struct {
	SubmissionID string   `json:"submission_id"`
	Status       Status   `json:"status"`
	Entrypoint   []string `json:"entrypoint"`
	// Message says why it failed or stopped.
	Message string `json:"message,omitempty"`
	// ExitCode is the entrypoint's exit code, once it exited.
	ExitCode  *int   `json:"exit_code,omitempty"`
	DriverPID int    `json:"driver_pid,omitempty"`
	Host      string `json:"host,omitempty"`
	// EnvNames are the variables it was submitted with (their values are
	// not kept).
	EnvNames []string `json:"env,omitempty"`
	// WorkingDirPackage is the digest of its working directory package.
	WorkingDirPackage string            `json:"working_dir_package,omitempty"`
	Metadata          map[string]string `json:"metadata,omitempty"`
	SubmitTime        time.Time         `json:"submit_time"`
	StartTime         time.Time         `json:"start_time,omitzero"`
	EndTime           time.Time         `json:"end_time,omitzero"`
}

// ErrNotFound: no job was submitted under that id (or it was deleted).
var ErrNotFound = gcs.ErrNotFound

// Client talks to a cluster's job server.
type Client struct {
	gc  *gcs.Client
	own bool
}

// New uses an open GCS connection (the caller closes it).
func New(gc *gcs.Client) *Client { return &Client{gc: gc} }

// Connect connects to the cluster at address: "" means $GORAY_ADDRESS,
// and "auto" the cluster `goray start --head` started on this machine.
// The cluster's token is read from $GORAY_AUTH_TOKEN_FILE or
// $GORAY_AUTH_TOKEN, or, for the cluster started on this machine, from its
// session directory.
func Connect(ctx context.Context, address string) (*Client, error) {
	if address == "" {
		address = os.Getenv("GORAY_ADDRESS")
	}
	if address == "" {
		return nil, errors.New("jobs: no cluster address (give one, or set GORAY_ADDRESS)")
	}
	url := address
	if address == "auto" {
		rec, ok, err := localcluster.Read()
		if err != nil || !ok {
			return nil, fmt.Errorf("jobs: address \"auto\": no cluster started with `goray start --head` on this machine (%v)", err)
		}
		url = rec.Address
	}
	url = localcluster.NormalizeAddress(url)
	creds, _, err := auth.Resolve(auth.Source{LocalTokenFile: localcluster.TokenFileFor(address)})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	opts, err := creds.NATSOptions(auth.RoleDriver)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	gc, err := gcs.Dial(ctx, url, zerolog.Nop(), opts...)
	if err != nil {
		return nil, fmt.Errorf("jobs: connect to %s: %w", url, err)
	}
	return &Client{gc: gc, own: true}, nil
}

// Close closes a connection Connect opened.
func (c *Client) Close() {
	if c.own {
		c.gc.Close()
	}
}

// SubmitOptions describe a job.
type SubmitOptions struct {
	// Entrypoint is the command and its arguments, run on the head in the
	// working directory.
	Entrypoint []string
	// SubmissionID names the job ("" : the server picks goray_<hex>); it
	// must be new.
	SubmissionID string
	// WorkingDir is packed (as sdk.WorkingDir packs, .git and Excludes
	// left out, at most 512 MiB), stored in the cluster and unpacked on
	// the head: the entrypoint runs there, and so do the job's workers
	// unless the driver gives a runtime env of its own.
	WorkingDir string
	Excludes   []string
	// Env is added to the entrypoint's environment.
	Env      map[string]string
	Metadata map[string]string
}

// Submit submits a job and returns its record (PENDING, or already
// RUNNING).
func (c *Client) Submit(ctx context.Context, o SubmitOptions) (*Job, error) {
	if len(o.Entrypoint) == 0 {
		return nil, fmt.Errorf("%w: jobs: no entrypoint", gcs.ErrInvalid)
	}
	req := &protos.SubmitJobRequest{SubmissionId: o.SubmissionID, Entrypoint: o.Entrypoint, Env: maps.Clone(o.Env), Metadata: maps.Clone(o.Metadata)}
	if o.WorkingDir != "" {
		p, err := runtimeenv.Pack(runtimeenv.PackSpec{WorkingDir: o.WorkingDir, Excludes: o.Excludes}, "")
		if err != nil {
			return nil, fmt.Errorf("%w: jobs: working dir: %w", gcs.ErrInvalid, err)
		}
		defer p.Remove()
		store, err := c.gc.Packages(ctx)
		if err != nil {
			return nil, fmt.Errorf("jobs: working dir: %w", err)
		}
		if _, err := gcs.UploadPacked(ctx, store, p); err != nil {
			return nil, fmt.Errorf("jobs: upload the working dir: %w", err)
		}
		req.WorkingDirDigest, req.WorkingDirContent = p.Digest, p.Content
	}
	sub, err := c.gc.SubmitJob(ctx, req)
	if err != nil {
		return nil, err
	}
	return fromProto(sub), nil
}

// Get returns a job's record.
func (c *Client) Get(ctx context.Context, id string) (*Job, error) {
	sub, err := c.gc.GetSubmission(ctx, id)
	if err != nil {
		return nil, err
	}
	return fromProto(sub), nil
}

// List returns every submitted job, oldest first.
func (c *Client) List(ctx context.Context) ([]Job, error) {
	subs, err := c.gc.ListSubmissions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Job, 0, len(subs))
	for _, s := range subs {
		out = append(out, *fromProto(s))
	}
	return out, nil
}

// Stop stops a job's driver (SIGTERM to its process group, SIGKILL after
// a grace); false if it had already ended. The job ends STOPPED.
func (c *Client) Stop(ctx context.Context, id string) (bool, error) {
	return c.gc.StopJob(ctx, id)
}

// Delete forgets an ended job: its record and output.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.gc.DeleteSubmission(ctx, id)
}

// Wait polls a job until it ends, and returns its final record.
func (c *Client) Wait(ctx context.Context, id string) (*Job, error) {
	for {
		j, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if j.Status.Ended() {
			return j, nil
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// pollEvery is how often Wait and FollowLogs ask.
const pollEvery = 250 * time.Millisecond

// Logs returns a job's output so far.
func (c *Client) Logs(ctx context.Context, id string) (string, error) {
	var b strings.Builder
	_, err := c.copyLogs(ctx, id, &b, 0, false)
	return b.String(), err
}

// FollowLogs writes a job's output to w as it comes, until the job ends.
func (c *Client) FollowLogs(ctx context.Context, id string, w io.Writer) error {
	_, err := c.copyLogs(ctx, id, w, 0, true)
	return err
}

// copyLogs writes output from stream sequence from on; following, it
// polls until the job has ended and its output is all read.
func (c *Client) copyLogs(ctx context.Context, id string, w io.Writer, from uint64, follow bool) (uint64, error) {
	for {
		rep, err := c.gc.JobLogs(ctx, id, from)
		if err != nil {
			return from, err
		}
		if len(rep.GetData()) > 0 {
			if _, err := w.Write(rep.GetData()); err != nil {
				return from, err
			}
		}
		advanced := rep.GetNext() > from
		from = rep.GetNext()
		if rep.GetDone() || (!follow && (len(rep.GetData()) == 0 || !advanced)) {
			return from, nil
		}
		if len(rep.GetData()) == 0 {
			select {
			case <-ctx.Done():
				return from, ctx.Err()
			case <-time.After(pollEvery):
			}
		}
	}
}

func millis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func fromProto(s *protos.Submission) *Job {
	j := &Job{
		SubmissionID: s.GetSubmissionId(), Status: Status(strings.TrimPrefix(s.GetStatus().String(), "JOB_")),
		Entrypoint: s.GetEntrypoint(), Message: s.GetMessage(), DriverPID: int(s.GetDriverPid()), Host: s.GetHost(),
		EnvNames: s.GetEnvNames(), WorkingDirPackage: s.GetWorkingDirDigest(), Metadata: s.GetMetadata(),
		SubmitTime: millis(s.GetSubmitTimeUnixMs()), StartTime: millis(s.GetStartTimeUnixMs()), EndTime: millis(s.GetEndTimeUnixMs()),
	}
	if s.GetExited() {
		code := int(s.GetExitCode())
		j.ExitCode = &code
	}
	return j
}
