package ec2sim

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// deviceName is what EC2 accepts for EBS volumes on Linux instances (EC2
// user guide, "Device names on Linux instances": /dev/sd[a-z] with an
// optional partition number 1-15, /dev/xvd[a-z], /dev/xvd[b-z][a-z]).
var deviceName = regexp.MustCompile(`^/dev/(sd[a-z]([1-9]|1[0-5])?|xvd[a-z]|xvd[b-z][a-z])$`)

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
	if !deviceName.MatchString(device) {
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
	if inst.state != "running" && inst.state != "stopped" && inst.state != "pending" {
		return nil, awsproto.BadRequest("IncorrectInstanceState", "Instance '%s' is not 'running'.", instID)
	}
	switch {
	case v.state == stateInUse:
		return nil, errVolumeInUse("%s is already attached to an instance", volID)
	case v.state != stateAvailable:
		return nil, errIncorrectState("%s is not 'available'.", volID)
	case v.az != inst.az:
		return nil, awsproto.BadRequest("InvalidVolume.ZoneMismatch",
			"The volume '%s' is not in the same availability zone as instance '%s'", volID, instID)
	}
	if _, used := inst.devices[device]; used || inst.poisoned[device] {
		return nil, errInvalidValue("Invalid value '%s' for unixDevice. Attachment point %s is already in use", device, device)
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

// completeAttach asks the host for the device, then marks the attachment
// attached; on failure the volume is available again and an attachVolume
// "failed" event says why. A stuck attachment (fault) never gets here.
func (s *Server) completeAttach(ctx context.Context, v *volume, a *attachment, gen uint64) {
	v.hostMu.Lock()
	defer v.hostMu.Unlock()
	s.mu.Lock()
	if v.att != a || a.gen != gen || a.state != attAttaching || a.stuckAttach {
		s.mu.Unlock()
		return
	}
	inst := s.instances[a.instanceID]
	host, spec := inst.host, worldapi.Attachment{VolumeID: v.id, BackingFile: v.backing, DeviceName: a.device}
	reqID, instID := a.requestID, a.instanceID
	s.mu.Unlock()

	var err error
	if host != nil {
		err = host.AttachDevice(ctx, spec)
	}
	s.mu.Lock()
	if err == nil {
		a.onHost = true
	}
	if v.att != a || a.gen != gen || a.state != attAttaching {
		s.mu.Unlock() // detached meanwhile: the detach worker (after hostMu) sees onHost
		return
	}
	if err != nil {
		v.att, v.state = nil, stateAvailable
		delete(inst.devices, a.device)
		s.volumeEventLocked(v.id, "attachVolume", "failed", err.Error(), reqID)
		s.mu.Unlock()
		s.log.Warn("attach failed on host", "volume", v.id, "instance", instID, "err", err)
		return
	}
	a.state = attAttached
	s.volumeEventLocked(v.id, "attachVolume", "attached", "", reqID)
	s.mu.Unlock()
	s.log.Info("volume attached", "volume", v.id, "instance", instID, "device", spec.DeviceName)
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
	// Without an instance, detaching a volume that is not attached is
	// IncorrectState; naming an instance it is not attached to (or a
	// device it does not use) is InvalidAttachment.NotFound. ebs-csi treats
	// both as "already detached".
	if a == nil && instID == "" {
		return nil, errIncorrectState("Volume '%s' is in the '%s' state.", volID, v.state)
	}
	if a == nil || (instID != "" && instID != a.instanceID) || (device != "" && device != a.device) {
		return nil, awsproto.BadRequest("InvalidAttachment.NotFound",
			"Volume %s can not be detached from %s because it is not attached", volID, instID)
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
// the guest still has it mounted (ErrDeviceBusy) the attachment stays
// "detaching", as EC2's does, and the detach is tried again every
// BusyRetry, until it succeeds or is forced. A dead host lets go at once.
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
	force, onHost := a.force, a.onHost
	if a.stuck && !force {
		s.mu.Unlock()
		return false, errors.New("detach stuck (fault injected)")
	}
	host := s.instances[a.instanceID].host
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
	if v.att != a {
		s.mu.Unlock()
		return
	}
	a.state = attDetached
	v.att = nil
	instID, device, force, reqID := a.instanceID, a.device, a.force, a.requestID
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
	s.volumeEventLocked(v.id, "detachVolume", "detached", "", reqID)
	s.mu.Unlock()
	s.log.Info("volume detached", "volume", v.id, "instance", instID, "device", device, "force", force)
}
