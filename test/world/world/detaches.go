package world

import (
	"context"
	"encoding/xml"
	"net/url"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/fakehost"
)

// DetachAsked is one DetachVolume that EC2 accepted, with what EC2 and
// the guest said at that moment: the facts behind chaos's invariants "no
// force-detach of a live host", "no detach while the kernel holds the
// device" and "no unmount result reused across generations".
type DetachAsked struct {
	At         time.Time
	VolumeID   string
	InstanceID string // the attachment's instance
	Force      bool
	// InstanceState is EC2's state of the instance once the detach was
	// accepted: "running" there means the instance was running when EC2
	// answered (no instance comes back from stopping or stopped here).
	InstanceState string
	// Guest is what the instance's fake host held of the volume when the
	// detach was asked; nil for a real host, one that is down, or one
	// that did not have the device.
	Guest *fakehost.Holding
}

// DetachesAsked returns the detaches EC2 accepted so far, from the
// from-th on (0: all), in the order they were answered.
func (w *World) DetachesAsked(from int) []DetachAsked {
	w.detachMu.Lock()
	defer w.detachMu.Unlock()
	if from >= len(w.detaches) {
		return nil
	}
	return append([]DetachAsked(nil), w.detaches[max(from, 0):]...)
}

// serveEC2 is ec2sim's handler with DetachVolume observed: the guest's
// holding is read before EC2 acts, EC2's instance state after it
// accepted.
func (w *World) serveEC2(ctx context.Context, action string, form url.Values) (any, error) {
	if action != "DetachVolume" {
		return w.ec2.Handle(ctx, action, form)
	}
	volumeID := form.Get("VolumeId")
	guests := w.holdingsOf(volumeID)
	out, err := w.ec2.Handle(ctx, action, form)
	if err != nil {
		return out, err
	}
	d := DetachAsked{At: time.Now(), VolumeID: volumeID, InstanceID: form.Get("InstanceId"),
		Force: strings.EqualFold(form.Get("Force"), "true")}
	if d.InstanceID == "" {
		d.InstanceID = attachmentInstance(out)
	}
	d.InstanceState, _ = w.ec2.InstanceState(d.InstanceID)
	if g, ok := guests[d.InstanceID]; ok {
		d.Guest = &g
	}
	w.detachMu.Lock()
	w.detaches = append(w.detaches, d)
	w.detachMu.Unlock()
	return out, nil
}

// holdingsOf reads every live fake host that has the volume's device.
func (w *World) holdingsOf(volumeID string) map[string]fakehost.Holding {
	out := map[string]fakehost.Holding{}
	for _, in := range w.Instances() {
		h, ok := in.Host.(*fakehost.Host)
		if !ok {
			continue
		}
		if g, up := h.Holding(volumeID); up && g.Attached {
			out[in.ID] = g
		}
	}
	return out
}

// attachmentInstance reads the instance id of DetachVolume's answer
// (the attachment it describes) as the wire carries it.
func attachmentInstance(out any) string {
	b, err := xml.Marshal(out)
	if err != nil {
		return ""
	}
	var a struct {
		InstanceID string `xml:"instanceId"`
	}
	if xml.Unmarshal(b, &a) != nil {
		return ""
	}
	return a.InstanceID
}
