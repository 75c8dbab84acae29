package main

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/agent/hostops"
	"github.com/tether-ecs/tether/internal/agentproto"
)

func TestUnmountRequests(t *testing.T) {
	const v1, v2 = "vol-0123456789abcdef0", "vol-0123456789abcdef1"
	type req = hostops.UnmountRequest
	for _, c := range []struct {
		in   req
		want []req
		err  string // "" for none
	}{
		{in: req{VolumeID: v1, Name: "a", Attachment: "i-1:1", Force: true}, want: []req{{VolumeID: v1, Name: "a", Attachment: "i-1:1", Force: true}}},
		{in: req{VolumeID: v1, Name: "a"}, want: []req{{VolumeID: v1, Name: "a"}}},
		{in: req{VolumeID: v1 + "," + v2, Name: "a,b", Attachment: "i-1:1,i-1:2", Force: true},
			want: []req{{VolumeID: v1, Name: "a", Attachment: "i-1:1", Force: true}, {VolumeID: v2, Name: "b", Attachment: "i-1:2", Force: true}}},
		{in: req{VolumeID: v1 + "," + v2, Name: "a,b"}, want: []req{{VolumeID: v1, Name: "a"}, {VolumeID: v2, Name: "b"}}},
		{in: req{VolumeID: v1 + "," + v2, Name: "a,b", Attachment: ","}, want: []req{{VolumeID: v1, Name: "a"}, {VolumeID: v2, Name: "b"}}},
		{in: req{VolumeID: v1 + "," + v2, Name: "a,b", Attachment: ",i-1:2"}, want: []req{{VolumeID: v1, Name: "a"}, {VolumeID: v2, Name: "b", Attachment: "i-1:2"}}},

		// One volume: checked as ever.
		{in: req{VolumeID: "", Name: "a"}, err: "invalid volume id"},
		{in: req{VolumeID: v1, Name: "../a"}, err: "invalid volume name"},
		{in: req{VolumeID: v1, Name: "a", Attachment: "$(x)"}, err: "invalid attachment"},
		// Lists.
		{in: req{VolumeID: v1 + "," + v2, Name: "a"}, err: "--name has 1 items, --volume-id 2"},
		{in: req{VolumeID: v1, Name: "a,b"}, err: "--name has 2 items, --volume-id 1"},
		{in: req{VolumeID: v1, Name: "a", Attachment: ","}, err: "--attachment has 2 items, --volume-id 1"},
		{in: req{VolumeID: v1 + "," + v2, Name: "a,b", Attachment: "i-1:1"}, err: "--attachment has 1 items, --volume-id 2"},
		{in: req{VolumeID: v1 + "," + v1, Name: "a,b"}, err: "given twice"},
		{in: req{VolumeID: v1 + "," + v2, Name: "a,a"}, err: `name "a" is given twice`},
		{in: req{VolumeID: v1 + ",", Name: "a,b"}, err: `invalid volume id ""`},
		{in: req{VolumeID: v1 + "," + v2, Name: "a,b", Attachment: "i-1:1,i-1/2"}, err: "invalid attachment"},
		{in: req{VolumeID: strings.Repeat(v1+",", agentproto.MaxBatch) + v2, Name: strings.Repeat("a,", agentproto.MaxBatch) + "b"}, err: "at most 24"},
	} {
		got, err := unmountRequests(c.in)
		switch {
		case c.err == "" && (err != nil || !reflect.DeepEqual(got, c.want)):
			t.Errorf("unmountRequests(%+v) = %+v, %v; want %+v", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, hostops.ErrBadInput) || got != nil):
			t.Errorf("unmountRequests(%+v) = %+v, %v; want bad input %q", c.in, got, err, c.err)
		}
	}
	// A batch of exactly MaxBatch is allowed.
	ids, names := make([]string, agentproto.MaxBatch), make([]string, agentproto.MaxBatch)
	for i := range ids {
		ids[i], names[i] = fmt.Sprintf("vol-0123456789abcd%02x", i), fmt.Sprintf("n%d", i)
	}
	if got, err := unmountRequests(req{VolumeID: agentproto.JoinList(ids), Name: agentproto.JoinList(names)}); err != nil || len(got) != agentproto.MaxBatch {
		t.Errorf("a batch of %d: %d requests, %v", agentproto.MaxBatch, len(got), err)
	}
}
