package stdlib

import (
	"strings"
	"testing"
	"time"

	"pipe.dev/pipe/lang/types"
)

func TestMeta(t *testing.T) {
	r := &Record{Key: "k", Topic: "t", Subject: "s.1", Partition: 3, Time: time.Unix(5, 0), Pos: Position{Offset: 7},
		Headers: []Header{{Key: "h", Value: []byte("v")}}}
	m := Meta(r)
	if m["topic"] != "t" || m["partition"] != int64(3) || m["offset"] != int64(7) || m["key"] != "k" ||
		m["timestamp"] != time.Unix(5, 0) || m["headers"].(map[string]any)["h"] != "v" || m["subject"] != "s.1" || len(m) != len(MetaFields()) {
		t.Fatalf("Meta = %v", m)
	}
	r.Msg = &MessageMeta{Exchange: "x", RoutingKey: "rk", Redelivered: true, MessageID: "id"}
	if m := Meta(r); m["exchange"] != "x" || m["routing_key"] != "rk" || m["redelivered"] != true || m["message_id"] != "id" {
		t.Fatalf("Meta of a message = %v", m)
	}
	// A record of another source (a test's given record) reads as an
	// unrouted message never delivered before, without an id.
	if m := Meta(&Record{}); m["exchange"] != "" || m["routing_key"] != "" || m["redelivered"] != false || m["message_id"] != nil {
		t.Fatalf("Meta of a record without message metadata = %v", m)
	}
	if m := Meta(&Record{}); m["timestamp"] != nil {
		t.Errorf("timestamp of a record without time = %v, want null", m["timestamp"])
	}
	if m := Meta(&Record{}); m["qos"] != nil {
		t.Errorf("qos of a record without it = %v, want null", m["qos"])
	}
	m = Meta(&Record{Msg: &MessageMeta{QoS: 1, Retained: true, PacketID: 7}})
	if m["qos"] != int64(1) || m["retained"] != true || m["packet_id"] != int64(7) {
		t.Errorf("Meta of an MQTT message = %v", m)
	}
	typ := MetaType([]MetaField{MetaOffset, MetaKey})
	if typ.String() != "meta" || len(typ.Fields) != 2 || typ.Field("offset").Type.Kind != types.Int {
		t.Errorf("MetaType = %v", typ.Fields)
	}
	for _, f := range []MetaField{{Name: "object_key", Type: types.StringType}, {Name: "offset", Type: types.StringType}} {
		err := NewRegistry().Register(&Spec{Kind: SourceKind, Name: "x", Meta: []MetaField{f}})
		if err == nil || !strings.Contains(err.Error(), "is not one of stdlib.MetaFields") {
			t.Errorf("Register with meta %s %s: %v", f.Name, f.Type, err)
		}
	}
}
