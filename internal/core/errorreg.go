package core

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Error registration lets an error that crossed a process boundary come
// back as the same Go value (sentinels) or the same Go type (error types),
// so errors.Is and errors.As work on the caller's side. Register at package
// init, in code both driver and workers run.

var errorRegistry struct {
	sync.RWMutex
	sentinels map[string]error        // name -> value
	names     map[error]string        // value -> name (comparable errors only)
	types     map[string]reflect.Type // type name -> type
}

func init() {
	errorRegistry.sentinels = map[string]error{}
	errorRegistry.names = map[error]string{}
	errorRegistry.types = map[string]reflect.Type{}
}

// RegisterError registers a sentinel error value (such as io.EOF or a
// package's ErrNotFound) so a task that returns it, wrapped or not, gives its
// caller an error for which errors.Is(err, sentinel) holds.
func RegisterError(sentinel error) {
	if sentinel == nil || !reflect.TypeOf(sentinel).Comparable() {
		panic(fmt.Sprintf("goray: RegisterError(%T): sentinel errors must be comparable non-nil values", sentinel))
	}
	name := fmt.Sprintf("%T:%s", sentinel, sentinel.Error())
	errorRegistry.Lock()
	defer errorRegistry.Unlock()
	errorRegistry.sentinels[name] = sentinel
	errorRegistry.names[sentinel] = name
}

// RegisterErrorType registers an error type E (such as *MyError) so a task
// error of that type is rebuilt, with its exported fields, on the caller's
// side, where errors.As(err, &target) finds it.
func RegisterErrorType[E error]() {
	t := reflect.TypeOf((*E)(nil)).Elem()
	errorRegistry.Lock()
	defer errorRegistry.Unlock()
	errorRegistry.types[t.String()] = t
}

func sentinelName(err error) (string, bool) {
	if !reflect.TypeOf(err).Comparable() {
		return "", false
	}
	errorRegistry.RLock()
	defer errorRegistry.RUnlock()
	name, ok := errorRegistry.names[err]
	return name, ok
}

func lookupSentinel(name string) (error, bool) {
	errorRegistry.RLock()
	defer errorRegistry.RUnlock()
	e, ok := errorRegistry.sentinels[name]
	return e, ok
}

func encodeRegisteredType(err error) ([]byte, bool) {
	t := reflect.TypeOf(err)
	errorRegistry.RLock()
	_, ok := errorRegistry.types[t.String()]
	errorRegistry.RUnlock()
	if !ok {
		return nil, false
	}
	b, merr := msgpack.Marshal(err)
	if merr != nil {
		return nil, false
	}
	return b, true
}

func decodeRegisteredType(name string, payload []byte) (error, bool) {
	errorRegistry.RLock()
	t, ok := errorRegistry.types[name]
	errorRegistry.RUnlock()
	if !ok {
		return nil, false
	}
	ptr := reflect.New(t)
	if t.Kind() == reflect.Pointer {
		ptr.Elem().Set(reflect.New(t.Elem()))
	}
	if err := msgpack.Unmarshal(payload, ptr.Interface()); err != nil {
		return nil, false
	}
	e, ok := ptr.Elem().Interface().(error)
	return e, ok
}
