// Package testconn holds what the tests of goray's connection code share:
// a real socket pair and payloads of arbitrary bytes. Only tests import it.
package testconn

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/goray/goray/protos"
)

// SocketPair returns the two ends of a unix stream socketpair: unlike
// net.Pipe it buffers and can be half-closed, as real connections can,
// and it uses up no loopback ports at fuzzing rates.
func SocketPair(tb testing.TB) (*net.UnixConn, *net.UnixConn) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	var ends [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), fmt.Sprintf("socketpair-%d", i))
		nc, err := net.FileConn(f)
		f.Close() // FileConn made its own copy of the descriptor
		if err != nil {
			tb.Fatal(err)
		}
		ends[i] = nc.(*net.UnixConn)
	}
	return ends[0], ends[1]
}

// RawMessage is a message whose encoding is exactly b, so that a test can
// send any payload through wire.Conn.Call: an empty message carrying b as
// unknown fields, which Marshal writes out unchecked.
func RawMessage(b []byte) proto.Message {
	m := &protos.GetNodeInfoRequest{}
	m.ProtoReflect().SetUnknown(protoreflect.RawFields(b))
	return m
}
