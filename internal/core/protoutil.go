package core

import "google.golang.org/protobuf/proto"

func marshalProto(m proto.Message) ([]byte, error) { return proto.Marshal(m) }

func unmarshalProto(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }

func cloneProto[M proto.Message](m M) M { return proto.Clone(m).(M) }
