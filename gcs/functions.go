package gcs

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/goray/goray/protos"
	"google.golang.org/protobuf/proto"
)

// functionManager stores each job's function table: the remote functions
// its binary registered, so workers started for the job can check they run
// the same code (same digest) as the driver.
type functionManager struct {
	bucketState
	env    *managerEnv
	tables map[protos.JobID]*protos.FunctionTable
}

func newFunctionManager(env *managerEnv) actor.Producer {
	return func() actor.Actor { return &functionManager{env: env} }
}

func (m *functionManager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.load()
	case readyRequest:
		m.respondReady(ctx)
	case *protos.RegisterFunctionsRequest:
		ctx.Respond(&protos.RegisterFunctionsReply{Error: m.register(msg.GetTable())})
	case *protos.GetFunctionsRequest:
		table, e := m.get(msg.GetJobId())
		ctx.Respond(&protos.GetFunctionsReply{Table: table, Error: e})
	}
}

func (m *functionManager) load() {
	m.tables = make(map[protos.JobID]*protos.FunctionTable)
	m.open(m.env, BucketFunctions, "goray GCS function tables: job id (hex) -> FunctionTable", func(key string, value []byte) error {
		id, t, err := decodeFunctionRecord(key, value)
		if err != nil {
			skipRecord(m.env.log, err)
			return nil
		}
		m.tables[id] = t
		return nil
	})
}

// register stores a job's table; a later registration replaces it (the
// latest binary of the job wins).
func (m *functionManager) register(t *protos.FunctionTable) *protos.GcsError {
	if e := m.unavailable(); e != nil {
		return e
	}
	if t == nil {
		return gcsErrorf(ErrInvalid, "register functions: no table")
	}
	id, e := parseID("job id", t.GetJobId())
	if e != nil {
		return e
	}
	t = proto.CloneOf(t)
	if err := m.putProto(id.String(), t); err != nil {
		return toGcsError(err)
	}
	m.tables[id] = t
	m.env.log.Debug().Str("job", id.Short()).Str("digest", t.GetDigest()).Int("functions", len(t.GetFunctions())).Msg("functions registered")
	return nil
}

func (m *functionManager) get(rawID []byte) (*protos.FunctionTable, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, e
	}
	id, e := parseID("job id", rawID)
	if e != nil {
		return nil, e
	}
	t, ok := m.tables[id]
	if !ok {
		return nil, gcsErrorf(ErrNotFound, "no functions registered for job %s", id)
	}
	// Tables are replaced, never mutated: safe to share with the encoder.
	return t, nil
}
