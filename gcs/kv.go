package gcs

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/goray/goray/protos"
)

// kvManager is Ray's internal KV: small values under (namespace, key),
// used by the runtime and by users through the SDK. Values are kept in
// memory (they are small and read often) and written through to the
// goray_kv bucket.
type kvManager struct {
	bucketState
	env *managerEnv
	ns  map[string]map[string][]byte
}

func newKVManager(env *managerEnv) actor.Producer {
	return func() actor.Actor { return &kvManager{env: env} }
}

// kvKey maps (namespace, key) to a bucket key. NATS KV keys allow only
// [-/_=.a-zA-Z0-9] and no empty tokens, while Ray's keys are arbitrary
// bytes, so each part is base64url-encoded (alphabet [-_a-zA-Z0-9], never a
// '.') and joined with '.'. The empty string becomes "=", which unpadded
// base64 never produces, so the mapping stays reversible.
func kvKey(namespace, key string) string {
	return kvToken(namespace) + "." + kvToken(key)
}

func kvToken(s string) string {
	if s == "" {
		return "="
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// parseKVToken inverts kvToken, and takes only what kvToken makes: base64
// also decodes other spellings of the same bytes (non-zero trailing bits,
// line breaks, "" for ""), and a second bucket key for one (namespace,
// key) would survive that key's deletion and come back on a restart.
func parseKVToken(t string) (string, error) {
	if t == "=" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return "", err
	}
	if s := string(b); kvToken(s) == t {
		return s, nil
	}
	return "", fmt.Errorf("%q is not the canonical encoding of its bytes", t)
}

// parseKVKey inverts kvKey.
func parseKVKey(k string) (namespace, key string, err error) {
	nsTok, keyTok, ok := strings.Cut(k, ".")
	if !ok || strings.Contains(keyTok, ".") {
		return "", "", fmt.Errorf("kv key %q: want <namespace>.<key>", k)
	}
	if namespace, err = parseKVToken(nsTok); err != nil {
		return "", "", fmt.Errorf("kv key %q: namespace: %w", k, err)
	}
	if key, err = parseKVToken(keyTok); err != nil {
		return "", "", fmt.Errorf("kv key %q: key: %w", k, err)
	}
	return namespace, key, nil
}

func (m *kvManager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		m.load()
	case readyRequest:
		m.respondReady(ctx)
	case *protos.KVPutRequest:
		added, e := m.put(msg)
		ctx.Respond(&protos.KVPutReply{Added: added, Error: e})
	case *protos.KVGetRequest:
		v, found, e := m.get(msg.GetNamespace(), msg.GetKey())
		ctx.Respond(&protos.KVGetReply{Found: found, Value: v, Error: e})
	case *protos.KVDeleteRequest:
		deleted, e := m.delete(msg.GetNamespace(), msg.GetKey())
		ctx.Respond(&protos.KVDeleteReply{Deleted: deleted, Error: e})
	case *protos.KVKeysRequest:
		keys, e := m.keys(msg.GetNamespace(), msg.GetPrefix())
		ctx.Respond(&protos.KVKeysReply{Keys: keys, Error: e})
	}
}

func (m *kvManager) load() {
	m.ns = make(map[string]map[string][]byte)
	m.open(m.env, BucketKV, "goray GCS internal KV: base64url(namespace).base64url(key) -> value", func(k string, value []byte) error {
		ns, key, err := decodeKVRecord(k, value)
		if err != nil {
			skipRecord(m.env.log, err)
			return nil
		}
		m.set(ns, key, value)
		return nil
	})
}

func (m *kvManager) set(ns, key string, value []byte) {
	keys := m.ns[ns]
	if keys == nil {
		keys = make(map[string][]byte)
		m.ns[ns] = keys
	}
	keys[key] = value
}

// put follows Ray's internal_kv_put: added reports whether the key is new;
// without overwrite an existing value is left alone.
func (m *kvManager) put(req *protos.KVPutRequest) (added bool, e *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return false, e
	}
	ns, key := req.GetNamespace(), req.GetKey()
	if key == "" {
		return false, gcsErrorf(ErrInvalid, "kv put: empty key")
	}
	_, exists := m.ns[ns][key]
	if exists && !req.GetOverwrite() {
		return false, nil
	}
	// The request is owned by this actor now; its value can be kept as is.
	value := req.GetValue()
	if value == nil {
		value = []byte{}
	}
	if err := storePut(m.kv, kvKey(ns, key), value); err != nil {
		return false, toGcsError(err)
	}
	m.set(ns, key, value)
	return !exists, nil
}

func (m *kvManager) get(ns, key string) ([]byte, bool, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, false, e
	}
	v, ok := m.ns[ns][key]
	// Values are replaced, never mutated, so the reply may share v.
	return v, ok, nil
}

func (m *kvManager) delete(ns, key string) (bool, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return false, e
	}
	if _, ok := m.ns[ns][key]; !ok {
		return false, nil
	}
	if err := storeDelete(m.kv, kvKey(ns, key)); err != nil {
		return false, toGcsError(err)
	}
	delete(m.ns[ns], key)
	if len(m.ns[ns]) == 0 {
		delete(m.ns, ns)
	}
	return true, nil
}

// keys lists a namespace's keys with the prefix, sorted. The prefix is
// matched on the decoded keys: base64 does not preserve prefixes, so the
// bucket's subject filtering cannot do it.
func (m *kvManager) keys(ns, prefix string) ([]string, *protos.GcsError) {
	if e := m.unavailable(); e != nil {
		return nil, e
	}
	var out []string
	for k := range m.ns[ns] {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}
