package gcs

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goray/goray/internal/recordjson"
	"github.com/goray/goray/protos"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Request/reply plumbing between NATS subscriptions and manager actors.
// The NATS handler only decodes and encodes; the actor owns the state, so
// every mutation is serialized in one mailbox without locks.

// endpoint is one served subject: a request/reply endpoint of a NATS
// micro service (serve), or a plain subscription (handler: node reports,
// which are published without a reply, and the shutdown request, whose
// reply carries its error in headers).
type endpoint struct {
	subject string
	serve   func(request)
	handler nats.MsgHandler
}

// request is what a handler needs of a request: micro.Request, which
// every served endpoint gets.
type request interface {
	Data() []byte
	Headers() micro.Headers
	Subject() string
	Reply() string
	Respond([]byte, ...micro.RespondOpt) error
	Error(code, description string, data []byte, opts ...micro.RespondOpt) error
}

// message constrains a type parameter to a pointer to a generated protobuf
// struct, so generic code can allocate one with new(T).
type message[T any] interface {
	*T
	proto.Message
}

// serveActor returns a handler that decodes a Req, checks it with check
// (nil: a request without fields), asks the actor at pid, and replies with
// the Rep it answers. Bad requests and actor timeouts are answered with a
// Rep carrying a GcsError, so a client always hears back and never has to
// wait for its own timeout.
func serveActor[Req, Rep any, PReq message[Req], PRep message[Rep]](s *Server, subject string, pid *actor.PID, check func(PReq) error) func(request) {
	return serveFunc[Req, Rep, PReq, PRep](s, subject, check, func(req PReq) (PRep, error) {
		return ask[PRep](s, pid, req)
	})
}

// serveFunc is serveActor for handlers that are more than one actor ask.
func serveFunc[Req, Rep any, PReq message[Req], PRep message[Rep]](s *Server, subject string, check func(PReq) error, handle func(PReq) (PRep, error)) func(request) {
	return func(m request) {
		start := time.Now()
		decode := proto.Unmarshal
		if wantsJSON(m) {
			decode = recordjson.Unmarshal
		}
		req, e := decodeRequestWith[Req](subject, m.Data(), check, decode)
		if e != nil {
			rep := PRep(new(Rep))
			setReplyError(rep, e)
			// Counted before the answer goes, so a caller that
			// reads the metrics after its answer sees its request.
			s.metrics.observe(subject, time.Since(start), e)
			s.respond(m, rep, e)
			return
		}
		rep, err := handle(req)
		if err != nil {
			rep = PRep(new(Rep))
			e = toGcsError(err)
			setReplyError(rep, e)
		} else if re, ok := any(rep).(interface{ GetError() *protos.GcsError }); ok {
			e = re.GetError()
		}
		s.metrics.observe(subject, time.Since(start), e)
		s.respond(m, rep, e)
	}
}

// decodeRequest decodes and checks a request arriving on subject; the
// error it answers is an ErrInvalid GcsError naming the subject and, for a
// request that decodes, the field that was wrong.
func decodeRequest[Req any, PReq message[Req]](subject string, data []byte, check func(PReq) error) (PReq, *protos.GcsError) {
	return decodeRequestWith[Req](subject, data, check, proto.Unmarshal)
}

// decodeRequestWith is decodeRequest with the decoder of the request's
// encoding (protobuf, or JSON: wantsJSON).
func decodeRequestWith[Req any, PReq message[Req]](subject string, data []byte, check func(PReq) error, decode func([]byte, proto.Message) error) (PReq, *protos.GcsError) {
	req := PReq(new(Req))
	if len(data) > maxMessageBytes {
		return nil, gcsErrorf(ErrInvalid, "%s: request of %d bytes, more than the limit of %d", subject, len(data), maxMessageBytes)
	}
	if err := decode(data, req); err != nil {
		return nil, decodeError(subject, req, err)
	}
	if check != nil {
		if err := check(req); err != nil {
			e := toGcsError(err)
			e.Message = subject + ": " + e.Message
			return nil, e
		}
	}
	return req, nil
}

func decodeError(subject string, req proto.Message, err error) *protos.GcsError {
	return gcsErrorf(ErrInvalid, "%s: cannot decode request as %s: %v",
		subject, req.ProtoReflect().Descriptor().FullName(), err)
}

// ask sends msg to an actor and waits for its typed answer.
func ask[Rep any](s *Server, pid *actor.PID, msg any) (Rep, error) {
	return await[Rep](pid, s.system.Root.RequestFuture(pid, msg, s.opts.RequestTimeout))
}

// await is the second half of ask, for callers that ask several actors at
// once.
func await[Rep any](pid *actor.PID, f *actor.Future) (Rep, error) {
	var zero Rep
	res, err := f.Result()
	if err != nil {
		if errors.Is(err, actor.ErrTimeout) {
			return zero, fmt.Errorf("%w: %s did not answer in time", ErrUnavailable, pid.Id)
		}
		return zero, fmt.Errorf("%w: ask %s: %w", ErrUnavailable, pid.Id, err)
	}
	if _, stopped := res.(*actor.DeadLetterResponse); stopped {
		return zero, fmt.Errorf("%w: %s is stopped", ErrUnavailable, pid.Id)
	}
	rep, ok := res.(Rep)
	if !ok {
		return zero, fmt.Errorf("%w: %s answered %T", ErrInternal, pid.Id, res)
	}
	return rep, nil
}

// respond encodes and sends a reply; requests published without a reply
// subject are served but get no answer. A reply carrying an error goes
// as a micro service error (the Nats-Service-Error headers, the reply in
// the body), so `nats micro stats` counts it.
func (s *Server) respond(m request, rep proto.Message, e *protos.GcsError) {
	if m.Reply() == "" {
		return
	}
	encode := proto.Marshal
	if wantsJSON(m) {
		encode = recordjson.Marshal
	}
	data, err := encode(rep)
	if err != nil {
		s.log.Error().Err(err).Str("subject", m.Subject()).Msg("encode reply")
		return
	}
	send := func(data []byte, e *protos.GcsError) error {
		if e != nil {
			return m.Error(e.GetCode(), e.GetMessage(), data)
		}
		return m.Respond(data)
	}
	// A listing of a large table may not fit: the requester then hears
	// why, rather than waiting for its timeout. (micro's Respond does not
	// wrap nats.ErrMaxPayload, so the size is checked first; the margin
	// is for the error headers.)
	if limit := s.maxPayload(); limit > 0 && int64(len(data)) > limit-replyHeaderMargin {
		r := rep.ProtoReflect().New().Interface()
		e = gcsErrorf(ErrInternal, "%s: the reply of %d bytes does not fit the NATS server's max_payload", m.Subject(), len(data))
		setReplyError(r, e)
		if data, err = encode(r); err != nil {
			s.log.Error().Err(err).Str("subject", m.Subject()).Msg("encode reply")
			return
		}
	}
	err = send(data, e)
	if err != nil {
		s.log.Debug().Err(err).Str("subject", m.Subject()).Msg("send reply")
	}
}

// HeaderEncoding set to "json" on a request makes the GCS read the request
// as JSON and answer JSON (recordjson: ids as hex), for operators asking
// with the nats CLI: nats req goray.gcs.node.list '{}' -H Goray-Encoding:json.
const HeaderEncoding = "Goray-Encoding"

func wantsJSON(m request) bool { return m.Headers().Get(HeaderEncoding) == "json" }

// replyHeaderMargin is room left in a reply for micro's error headers.
const replyHeaderMargin = 1024

// maxPayload is the NATS server's max_payload (0: not connected).
func (s *Server) maxPayload() int64 {
	if s.nc == nil {
		return 0
	}
	return s.nc.MaxPayload()
}

var gcsErrorName = (&protos.GcsError{}).ProtoReflect().Descriptor().FullName()

// setReplyError stores e in the reply's `error` field. Every GCS reply type
// has one (except ShutdownReply, served separately), so reflection spares a
// hand-written setter per type.
func setReplyError(rep proto.Message, e *protos.GcsError) {
	m := rep.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("error")
	if fd == nil || fd.Message() == nil || fd.Message().FullName() != gcsErrorName {
		return
	}
	m.Set(fd, protoreflect.ValueOfMessage(e.ProtoReflect()))
}

// readyRequest asks a manager whether it loaded its state; it answers
// readyReply after Started has run, since Started is processed first.
type readyRequest struct{}

type readyReply struct{ err error }

// defaultRequestTimeout bounds the wait for a manager's answer.
const defaultRequestTimeout = 5 * time.Second
