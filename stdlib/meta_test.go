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
	if m := Meta(&Record{}); m["timestamp"] != nil || m["qos"] != nil {
		t.Errorf("timestamp and qos of a record without them = %v, %v, want null", m["timestamp"], m["qos"])
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
