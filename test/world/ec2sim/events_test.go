package ec2sim

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// TestEBSEventsAsDocumented: the volume events EC2 sends are those of the
// EBS guide's samples and no others: createVolume available (with the
// CreateVolume's request id), nothing for a successful attach or (by
// default) a detach, attachVolume failed when the volume's KMS key has
// become unusable (the key's ARN in resources[1], an empty request-id, the
// cause as the guide words it), deleteVolume deleted.
func TestEBSEventsAsDocumented(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.addInstance(t, instA, azA)
	keyARN := w.srv.AddKMSKey("11111111-2222-4333-8444-555555555555", "alias/data")
	out, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1),
		Encrypted: aws.Bool(true), KmsKeyId: aws.String("alias/data")})
	if err != nil {
		t.Fatal(err)
	}
	vol := aws.ToString(out.VolumeId)
	w.waitState(t, vol, "available", "")
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")
	if err := detach(t, w, vol, false); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "available", "")
	if got := strings.Join(eventKinds(w, vol), " "); got != "createVolume/available" {
		t.Fatalf("after create, attach, detach: %q, want the create's event only", got)
	}

	for _, c := range []struct {
		unusable func() error
		cause    string
	}{
		{func() error { return w.srv.DisableKMSKey("alias/data") }, keyARN + " is disabled."},
		{func() error { return w.srv.ScheduleKMSKeyDeletion(keyARN) }, keyARN + " is pending deletion."},
	} {
		if err := c.unusable(); err != nil {
			t.Fatal(err)
		}
		if err := attach(t, w, vol, instA, "/dev/xvdg"); err != nil {
			t.Fatalf("AttachVolume itself is accepted: %v", err)
		}
		w.waitState(t, vol, "available", "")
		var failed []string
		for _, e := range w.events.list() {
			var d map[string]string
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				t.Fatal(err)
			}
			if e.DetailType != detailVolume || d["event"] != "attachVolume" || d["cause"] != c.cause {
				continue
			}
			keys := make([]string, 0, len(d))
			for k := range d {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if len(e.Resources) != 2 || e.Resources[0] != "arn:aws:ec2:us-west-2:123456789012:volume/"+vol || e.Resources[1] != keyARN ||
				d["result"] != "failed" || d["request-id"] != "" || strings.Join(keys, ",") != "cause,event,request-id,result" {
				t.Errorf("attachVolume failure event %+v detail %v", e, d)
			}
			failed = append(failed, d["cause"])
		}
		if len(failed) != 1 {
			t.Errorf("attachVolume failures with cause %q: %d, want 1", c.cause, len(failed))
		}
	}

	if _, err := w.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(vol)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, vol+" deleted", func() (bool, string) {
		return hasEvent(w, vol, "deleteVolume", "deleted", ""), strings.Join(eventKinds(w, vol), " ")
	})
	want := "createVolume/available attachVolume/failed attachVolume/failed deleteVolume/deleted"
	if got := strings.Join(eventKinds(w, vol), " "); got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	reqID, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	for _, d := range volumeEvents(w, vol) {
		if d.Event == "createVolume" && (reqID == "" || d.RequestID != reqID) {
			t.Errorf("createVolume event request-id %q is not the CreateVolume's (%q)", d.RequestID, reqID)
		}
	}
}

// TestDetachEventsOption: with Config.DetachEvents a completed detach
// sends detachVolume/detached (with the DetachVolume's request id).
func TestDetachEventsOption(t *testing.T) {
	for _, on := range []bool{false, true} {
		w := newWorld(t, func(c *Config) { c.DetachEvents = on })
		w.addInstance(t, instA, azA)
		vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
		if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
			t.Fatal(err)
		}
		w.waitState(t, vol, "in-use", "attached")
		if err := detach(t, w, vol, false); err != nil {
			t.Fatal(err)
		}
		w.waitState(t, vol, "available", "")
		got := hasEvent(w, vol, "detachVolume", "detached", "")
		if got != on {
			t.Errorf("DetachEvents %v: detachVolume event sent %v (events %v)", on, got, eventKinds(w, vol))
		}
		for _, d := range volumeEvents(w, vol) {
			if d.Event == "detachVolume" && len(d.RequestID) != 36 {
				t.Errorf("detachVolume request-id %q", d.RequestID)
			}
		}
	}
}

// TestReattachAfterMaintenance: a reattach with the key usable is silent;
// with the key disabled a reattachVolume failure event names the key and
// the guest loses the device.
func TestReattachAfterMaintenance(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	host := w.addInstance(t, instA, azA)
	keyARN := w.srv.AddKMSKey("11111111-2222-4333-8444-555555555555")
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1), Encrypted: aws.Bool(true), KmsKeyId: aws.String(keyARN)})
	if err := attach(t, w, vol, instA, "/dev/xvdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, vol, "in-use", "attached")
	if err := w.srv.ReattachAfterMaintenance(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if _, ok := host.has(vol); !ok || len(eventKinds(w, vol)) != 1 {
		t.Fatalf("a reattach with a usable key: device %v, events %v", ok, eventKinds(w, vol))
	}
	if err := w.srv.DisableKMSKey(keyARN); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.ReattachAfterMaintenance(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if _, ok := host.has(vol); ok {
		t.Error("the guest still has the device after a failed reattach")
	}
	if !hasEvent(w, vol, "reattachVolume", "failed", keyARN+" is disabled.") {
		t.Errorf("events %v, want reattachVolume/failed", eventKinds(w, vol))
	}
	for _, e := range w.events.list() {
		if strings.Contains(string(e.Detail), "reattachVolume") && (len(e.Resources) != 2 || e.Resources[1] != keyARN) {
			t.Errorf("reattachVolume resources %v", e.Resources)
		}
	}
}
