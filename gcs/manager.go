package gcs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goray/goray/internal/recordjson"
	"github.com/goray/goray/protos"
	"github.com/goray/goray/protos/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
)

// managerEnv is what every manager actor shares: the NATS connection for
// events, JetStream for its bucket, and a logger.
type managerEnv struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	log      zerolog.Logger
	replicas int
	// wireAuth authenticates the GCS's wire connections to raylets and
	// workers.
	wireAuth wire.Authenticator
	// packagesCap is the packages store's cap (Options.PackagesMaxBytes).
	packagesCap int64
	// taskOpts bound the task manager (Options.TaskEvents*).
	taskOpts taskOptions
}

// bucketState is embedded by managers: it opens their bucket on Started
// (which is also what a restart after a panic runs, so a restarted manager
// reloads from the store rather than serving half-updated memory) and
// remembers a load failure so requests get ErrUnavailable instead of an
// answer from empty state.
type bucketState struct {
	kv      jetstream.KeyValue
	js      jetstream.JetStream
	log     zerolog.Logger
	loadErr error
}

func (b *bucketState) open(env *managerEnv, bucket, description string, load func(key string, value []byte) error) {
	b.kv, b.loadErr = nil, nil
	var kv jetstream.KeyValue
	var err error
	// JetStream may not serve yet (a NATS cluster that lost a server
	// electing the bucket's leader): keep trying for a while rather than
	// fail the GCS's start.
	giveUp := time.Now().Add(loadRetryFor)
	for {
		kv, err = openBucket(env.js, bucket, description, env.replicas)
		if err == nil {
			err = loadBucket(kv, env.log, load)
		}
		if err == nil || !errors.Is(err, ErrUnavailable) || !time.Now().Before(giveUp) {
			break
		}
		env.log.Warn().Err(err).Str("bucket", bucket).Msg("the GCS's store does not answer yet; trying again")
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		b.loadErr = err
		env.log.Error().Err(err).Str("bucket", bucket).Msg("load state")
		return
	}
	b.kv, b.js, b.log = kv, env.js, env.log
}

// skipRecord logs a stored record a manager leaves out of its state
// (records.go).
func skipRecord(log zerolog.Logger, err error) {
	log.Warn().Err(err).Msg("skip stored record")
}

// putProtoAsync persists a message without waiting for the store's
// acknowledgement, for records written at a high rate (placement groups):
// the write is a publish on the bucket's subject, ordered with this
// connection's other writes, and a failed one is logged.
func (b *bucketState) putProtoAsync(key string, m proto.Message) error {
	data, err := recordjson.Marshal(m)
	if err != nil {
		return fmt.Errorf("%w: encode %s: %w", ErrInternal, key, err)
	}
	return b.publishAsync(nats.NewMsg(kvSubject(b.kv.Bucket(), key)), data)
}

func (b *bucketState) publishAsync(msg *nats.Msg, data []byte) error {
	msg.Data = data
	// When acknowledgements lag (JetStream fsyncing every write, a slow
	// disk) a burst blocks here, holding back the manager, instead of
	// failing after nats.go's 200 ms default.
	f, err := b.js.PublishMsgAsync(msg, jetstream.WithStallWait(storeTimeout))
	if err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrUnavailable, msg.Subject, err)
	}
	go func() {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.log.Error().Err(err).Str("subject", msg.Subject).Msg("asynchronous store write failed")
		}
	}()
	return nil
}

// kvSubject is the subject a KV bucket stores key under.
func kvSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// unavailable is non-nil while the manager has no usable state.
func (b *bucketState) unavailable() *protos.GcsError {
	if b.loadErr != nil {
		return toGcsError(b.loadErr)
	}
	return nil
}

// respondReady answers a readyRequest.
func (b *bucketState) respondReady(ctx actor.Context) {
	ctx.Respond(readyReply{err: b.loadErr})
}

// putProto persists a message.
func (b *bucketState) putProto(key string, m proto.Message) error {
	data, err := recordjson.Marshal(m)
	if err != nil {
		return fmt.Errorf("%w: encode %s: %w", ErrInternal, key, err)
	}
	return storePut(b.kv, key, data)
}

// publish sends an event; events are best effort (a subscriber that missed
// one can always list), so failures are only logged. Events on
// goray.events.> are JSON, for operators' `nats sub` (DecodeEvent reads
// either form); the per-actor and per-group subjects, which callers
// watch, stay binary.
func (env *managerEnv) publish(subject string, m proto.Message) {
	encode := proto.Marshal
	if strings.HasPrefix(subject, eventsPrefix) {
		encode = recordjson.Marshal
	}
	data, err := encode(m)
	if err != nil {
		env.log.Debug().Err(err).Str("subject", subject).Msg("encode event")
		return
	}
	env.publishData(subject, data)
}

// publishData sends an event already encoded.
func (env *managerEnv) publishData(subject string, data []byte) {
	if err := env.nc.Publish(subject, data); err != nil {
		env.log.Debug().Err(err).Str("subject", subject).Msg("publish event")
	}
}

// parseID validates an id field of a request.
func parseID(what string, b []byte) (protos.UniqueID, *protos.GcsError) {
	id, err := protos.UniqueIDFromBytes(b)
	if err != nil {
		return id, gcsErrorf(ErrInvalid, "%s: %v", what, err)
	}
	if id.IsZero() {
		return id, gcsErrorf(ErrInvalid, "%s is all zero", what)
	}
	return id, nil
}
