package gcs

import (
	"cmp"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goray/goray/protos"
	"google.golang.org/protobuf/proto"
)

// jobManager owns the job table: one JobInfo per driver run.
type jobManager struct {
	bucketState
	peers
	env  *managerEnv
	jobs map[protos.JobID]*protos.JobInfo
	// packages cleans the packages store as jobs end.
	packages *packagesCleaner
}

func newJobManager(env *managerEnv) actor.Producer {
	return func() actor.Actor { return &jobManager{env: env} }
}

func (m *jobManager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.peers.started(ctx)
		m.load()
		if m.env.js != nil && m.env.packagesCap > 0 {
			m.packages = &packagesCleaner{env: m.env, capBytes: m.env.packagesCap}
			m.packages.clean(m.live())
		}
	case readyRequest:
		m.respondReady(ctx)
	case *protos.RegisterJobRequest:
		ctx.Respond(&protos.RegisterJobReply{Error: m.register(msg.GetJob())})
	case *protos.FinishJobRequest:
		ctx.Respond(&protos.FinishJobReply{Error: m.finish(msg.GetJobId())})
	case *protos.ListJobsRequest:
		jobs, e := m.list()
		ctx.Respond(&protos.ListJobsReply{Jobs: jobs, Error: e})
	}
}

func (m *jobManager) load() {
	m.jobs = make(map[protos.JobID]*protos.JobInfo)
	m.open(m.env, BucketJobs, "goray GCS job table: job id (hex) -> JobInfo", func(key string, value []byte) error {
		id, job, err := decodeJobRecord(key, value)
		if err != nil {
			skipRecord(m.env.log, err)
			return nil
		}
		m.jobs[id] = job
		return nil
	})
}

// register records a job. Registering an id again replaces the record: a
// driver that re-registers after a GCS restart is the same job starting
// over, not a conflict.
func (m *jobManager) register(job *protos.JobInfo) *protos.GcsError {
	if e := m.unavailable(); e != nil {
		return e
	}
	if job == nil {
		return gcsErrorf(ErrInvalid, "register job: no job info")
	}
	id, e := parseID("job id", job.GetJobId())
	if e != nil {
		return e
	}
	job = proto.CloneOf(job)
	job.Finished = false
	job.EndTimeUnixMs = 0
	if job.StartTimeUnixMs == 0 {
		job.StartTimeUnixMs = time.Now().UnixMilli()
	}
	if err := m.putProto(id.String(), job); err != nil {
		return toGcsError(err)
	}
	m.jobs[id] = job
	m.env.log.Info().Str("job", id.Short()).Str("executable", job.GetExecutable()).Int32("driver_pid", job.GetDriverPid()).Msg("job registered")
	m.env.publish(SubjectJobEvents, job)
	m.tell(jobChanged{job: id})
	return nil
}

// finish marks a job finished; finishing it again is a no-op, so a driver
// and a raylet noticing the driver's exit can both report it.
func (m *jobManager) finish(rawID []byte) *protos.GcsError {
	if e := m.unavailable(); e != nil {
		return e
	}
	id, e := parseID("job id", rawID)
	if e != nil {
		return e
	}
	old, ok := m.jobs[id]
	if !ok {
		return gcsErrorf(ErrNotFound, "job %s is not registered", id)
	}
	if old.GetFinished() {
		return nil
	}
	job := proto.CloneOf(old)
	job.Finished = true
	job.EndTimeUnixMs = time.Now().UnixMilli()
	if err := m.putProto(id.String(), job); err != nil {
		return toGcsError(err)
	}
	m.jobs[id] = job
	m.env.log.Info().Str("job", id.Short()).Msg("job finished")
	m.env.publish(SubjectJobEvents, job)
	m.tell(jobChanged{job: id, finished: true})
	m.packages.clean(m.live())
	return nil
}

// live lists the jobs not finished.
func (m *jobManager) live() []*protos.JobInfo {
	var out []*protos.JobInfo
	for _, j := range m.jobs {
		if !j.GetFinished() {
			out = append(out, j)
		}
	}
	return out
}

func (m *jobManager) list() ([]*protos.JobInfo, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, e
	}
	out := make([]*protos.JobInfo, 0, len(m.jobs))
	for _, j := range m.jobs {
		// Stored records are replaced, never mutated, so sharing them with
		// the encoder goroutine is safe.
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b *protos.JobInfo) int {
		return cmp.Or(
			cmp.Compare(a.GetStartTimeUnixMs(), b.GetStartTimeUnixMs()),
			slices.Compare(a.GetJobId(), b.GetJobId()),
		)
	})
	return out, nil
}
