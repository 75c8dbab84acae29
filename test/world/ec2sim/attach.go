package ec2sim

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/tether-ecs/tether/internal/volspec"
	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

func (s *Server) attachVolume(ctx context.Context, form url.Values) (any, error) {
	volID, err := required(form, "VolumeId")
	if err != nil {
		return nil, err
	}
	instID, err := required(form, "InstanceId")
	if err != nil {
		return nil, err
	}
	device, err := required(form, "Device")
	if err != nil {
		return nil, err
	}
	// The names EC2 takes for an EBS volume on a Linux instance: EC2 user
	// guide, "Device names on Linux instances", and aws-ebs-csi-driver's
	// device allocator (pkg/cloud/devicemanager: /dev/xvddx is the last
	// two-letter name EC2 accepts). volspec holds the set. EC2's answer to
	// a name outside it: "Value (/dev/sdk1) for parameter device is
	// invalid. /dev/sdk1 is not a valid EBS device name."
	if volspec.ValidateDeviceName(device) != nil {
		return nil, errInvalidValue("Value (%s) for parameter device is invalid. %s is not a valid EBS device name.", device, device)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[volID]
	if v == nil {
		return nil, errVolumeNotFound(volID)
	}
	inst := s.instances[instID]
	if inst == nil {
		return nil, errInstanceNotFound(instID)
	}
	if err := attachableInstance(inst); err != nil {
		return nil, err
	}
	switch {
	case v.state == stateInUse && v.multiAttach:
		return nil, awsproto.BadRequest("UnsupportedOperation",
			"This EC2 attaches a Multi-Attach volume to one instance at a time; %s is attached to %s.", volID, v.att.instanceID)
	case v.state == stateInUse:
		// "vol-... is already attached to an instance" (VolumeInUse), also
		// while attaching or detaching: the volume is not available.
		return nil, errVolumeInUse("%s is already attached to an instance", volID)
	case v.state != stateAvailable:
		// Real answer: "IncorrectState: vol-c92fa384 is not 'available'."
		return nil, errIncorrectState("%s is not 'available'.", volID)
	case v.az != inst.az:
		return nil, awsproto.BadRequest("InvalidVolume.ZoneMismatch",
			"The volume '%s' is not in the same availability zone as instance '%s'", volID, instID)
	}
	// A name is in use while any attachment or block device mapping of the
	// instance has it, the root device's included, in any state (a
	// detaching volume keeps its name until it is detached). Real answer:
	// "Invalid value '/dev/sdf' for unixDevice. Attachment point /dev/sdf
	// is already in use" (InvalidParameterValue).
	if _, used := inst.devices[device]; used || inst.poisoned[device] {
		return nil, errInvalidValue("Invalid value '%s' for unixDevice. Attachment point %s is already in use", device, device)
	}
	if err := s.checkAttachmentLimitLocked(inst); err != nil {
		return nil, err
	}
	a := &attachment{instanceID: instID, device: device, state: attAttaching, at: time.Now(), gen: 1,
		wake: make(chan struct{}, 1), requestID: awsproto.RequestID(ctx), stuckAttach: v.stickAttach}
	v.stickAttach = false
	v.att, v.state = a, stateInUse
	inst.devices[device] = volID
	delay := s.lat.Sample(latency.AttachVolume) + v.attachDelay
	v.attachDelay = 0
	s.log.Info("volume attaching", "volume", volID, "instance", instID, "device", device, "after", delay)
	s.afterLocked(delay, func(ctx context.Context) { s.completeAttach(ctx, v, a, a.gen) })
	return &attachmentResponse{xmlAttachment: a.xml(volID)}, nil
}

// attachableInstance says whether a volume may be attached to the
// instance now. EBS attaches to running and stopped instances (EBS user
// guide, "Attach an Amazon EBS volume to an instance"; a volume attached
// to a stopped instance shows attached). A pending instance answers
// "IncorrectState: Instance 'i-...' is not 'running'." (a real answer);
// stopping, shutting-down and terminated ones IncorrectInstanceState (the
// error codes page: the instance is in the wrong state for the action).
func attachableInstance(in *instance) error {
	switch in.state {
	case "running", "stopped":
		return nil
	case "pending":
		return errIncorrectState("Instance '%s' is not 'running'.", in.id)
	}
	return errIncorrectInstanceState("Instance '%s' is not 'running'.", in.id)
}

// completeAttach ends an "attaching": the volume's KMS key is checked (an
// unusable key fails the attach, with EBS's documented attachVolume
// event), then the guest gets the device and the attachment is attached,
// with no event (EBS sends none for a successful attach). A stopped or dead
// guest gets no device; the attachment is attached all the same, as EBS's
// is. When the guest cannot make the device, the attachment stays
// attaching, as EC2's stuck attachments do, until it is detached. A stuck
// attachment (fault) never gets here.
func (s *Server) completeAttach(ctx context.Context, v *volume, a *attachment, gen uint64) {
	v.hostMu.Lock()
	defer v.hostMu.Unlock()
	s.mu.Lock()
	if v.att != a || a.gen != gen || a.state != attAttaching || a.stuckAttach {
		s.mu.Unlock()
		return
	}
	inst := s.instances[a.instanceID]
	if v.encrypted {
		if cause := s.keyCauseLocked(v.kmsKey); cause != "" {
			v.att, v.state = nil, stateAvailable
			delete(inst.devices, a.device)
			s.attachFailedEventLocked(v.id, "attachVolume", v.kmsKey, cause)
			s.mu.Unlock()
			s.log.Warn("attach failed: KMS key unusable", "volume", v.id, "instance", inst.id, "cause", cause)
			return
		}
	}
	if inst.guestGone || inst.state == "stopped" {
		a.state = attAttached
		s.mu.Unlock()
		s.log.Info("volume attached (no guest to see it)", "volume", v.id, "instance", inst.id, "state", inst.state)
		return
	}
	host, spec := inst.host, worldapi.Attachment{VolumeID: v.id, BackingFile: v.backing, DeviceName: a.device}
	s.mu.Unlock()

	var err error
	if host != nil {
		err = host.AttachDevice(ctx, spec)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		a.onHost = true
	}
	if v.att != a || a.gen != gen || a.state != attAttaching {
		return // detached meanwhile: the detach worker (after hostMu) sees onHost
	}
	switch {
	case err == nil, errors.Is(err, worldapi.ErrHostDown):
		a.state = attAttached
		s.log.Info("volume attached", "volume", v.id, "instance", inst.id, "device", a.device, "guestDevice", err == nil)
	default:
		s.log.Warn("attach stuck: the guest could not make the device", "volume", v.id, "instance", inst.id, "err", err)
	}
}

func (s *Server) detachVolume(ctx context.Context, form url.Values) (any, error) {
	volID, err := required(form, "VolumeId")
	if err != nil {
		return nil, err
	}
	force, _, err := optBool(form, "Force")
	if err != nil {
		return nil, err
	}
	instID, device := form.Get("InstanceId"), form.Get("Device")
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[volID]
	if v == nil {
		return nil, errVolumeNotFound(volID)
	}
	if instID != "" && s.instances[instID] == nil {
		return nil, errInstanceNotFound(instID)
	}
	a := v.att
	// Detaching a volume that is attached nowhere is IncorrectState
	// ("Volume 'vol-...' is in the 'available' state.", a real answer with
	// InstanceId given: aws-ebs-csi-driver#1801, hashicorp/terraform#9023);
	// naming an instance it is not attached to (or a device it does not
	// use) is InvalidAttachment.NotFound. ebs-csi treats both as "already
	// detached".
	if a == nil {
		return nil, errIncorrectState("Volume '%s' is in the '%s' state.", volID, v.state)
	}
	if a == nil || (instID != "" && instID != a.instanceID) || (device != "" && device != a.device) {
		return nil, awsproto.BadRequest("InvalidAttachment.NotFound",
			"Volume %s can not be detached from %s because it is not attached", volID, instID)
	}
	// An instance on its way to stopped or terminated (or not yet running)
	// keeps its volumes, forced or not. Real answer: "IncorrectInstanceState:
	// Unable to detach volume 'vol-x' from instance 'i-old'. The instance is
	// not in a state in which volumes can be detached."
	switch st := s.instances[a.instanceID].state; st {
	case "pending", "stopping", "shutting-down":
		return nil, errIncorrectInstanceState("Unable to detach volume '%s' from instance '%s'. The instance is not in a state in which volumes can be detached.",
			volID, a.instanceID)
	}
	if a.state == attDetaching {
		// Asking again is harmless; Force upgrades the pending detach.
		if force && !a.force {
			a.force = true
			s.log.Warn("detach forced", "volume", volID, "instance", a.instanceID)
			nudge(a.wake)
		}
		return &attachmentResponse{xmlAttachment: a.xml(volID)}, nil
	}
	a.state, a.force, a.gen = attDetaching, force, a.gen+1
	a.stuck, v.stickDetach = v.stickDetach, false
	a.requestID = awsproto.RequestID(ctx)
	gen := a.gen
	s.log.Info("volume detaching", "volume", volID, "instance", a.instanceID, "force", force)
	s.afterLocked(s.lat.Sample(latency.DetachVolume), func(ctx context.Context) { s.runDetach(ctx, v, a, gen) })
	return &attachmentResponse{xmlAttachment: a.xml(volID)}, nil
}

func nudge(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// runDetach asks the host to let go of the device until it does. While
// the guest still has it mounted (ErrDeviceBusy), or the guest is hung, the
// attachment stays "detaching", as EC2's does, and the detach is tried
// again every BusyRetry, until it succeeds or is forced. A dead or stopped
// guest lets go at once.
func (s *Server) runDetach(ctx context.Context, v *volume, a *attachment, gen uint64) {
	for attempt := 1; ; attempt++ {
		done, err := s.tryDetach(ctx, v, a, gen)
		if done {
			return
		}
		if attempt == 1 || attempt%20 == 0 {
			s.log.Info("detach waiting for the guest", "volume", v.id, "attempt", attempt, "err", err)
		}
		t := time.NewTimer(s.cfg.BusyRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

func (s *Server) tryDetach(ctx context.Context, v *volume, a *attachment, gen uint64) (done bool, err error) {
	v.hostMu.Lock()
	defer v.hostMu.Unlock()
	s.mu.Lock()
	if v.att != a || a.gen != gen || a.state != attDetaching {
		s.mu.Unlock()
		return true, nil
	}
	a.detachTries++
	inst := s.instances[a.instanceID]
	force, onHost := a.force, a.onHost && !inst.guestGone
	if a.stuck && !force {
		s.mu.Unlock()
		return false, errors.New("detach stuck (fault injected)")
	}
	if onHost && inst.status.hung() && !force {
		s.mu.Unlock()
		return false, errors.New("the guest is hung: it does not release the device")
	}
	host := inst.host
	s.mu.Unlock()
	if onHost && host != nil {
		err = host.DetachDevice(ctx, v.id, force)
		if err != nil && !errors.Is(err, worldapi.ErrHostDown) {
			return false, err
		}
	}
	s.finishDetach(v, a)
	return true, nil
}

// finishDetach frees the attachment and the device name. Caller holds
// v.hostMu, not s.mu.
func (s *Server) finishDetach(v *volume, a *attachment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finishDetachLocked(v, a)
}

// finishDetachLocked is finishDetach for callers holding s.mu.
func (s *Server) finishDetachLocked(v *volume, a *attachment) {
	if v.att != a {
		return
	}
	a.state = attDetached
	v.att = nil
	if s.volumes[v.id] != nil {
		v.state = stateAvailable
	}
	if inst := s.instances[a.instanceID]; inst != nil {
		delete(inst.devices, a.device)
		if a.force && inst.poisonOnForce {
			inst.poisoned[a.device] = true
			s.log.Warn("device name left unusable until reboot", "instance", a.instanceID, "device", a.device)
		}
	}
	if s.cfg.DetachEvents {
		s.volumeEventLocked(v.id, "detachVolume", "detached", "", a.requestID)
	}
	s.log.Info("volume detached", "volume", v.id, "instance", a.instanceID, "device", a.device, "force", a.force)
}
