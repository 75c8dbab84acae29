package ec2sim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Test control: the quirks of EC2 that operators meet, switched on one at
// a time (and the KMS keys the account has). Each is covered by a test.

type faults struct {
	createFailures []string // causes of the next creates that fail asynchronously
}

func newFaults() faults { return faults{} }

// takeCreateFailure pops the next scripted asynchronous create failure.
// Caller holds s.mu.
func (f *faults) takeCreateFailure() string {
	if len(f.createFailures) == 0 {
		return ""
	}
	c := f.createFailures[0]
	f.createFailures = f.createFailures[1:]
	return c
}

// FailNextCreates makes the next n CreateVolume calls return a volume id
// (state creating) whose creation then fails: the volume vanishes
// (InvalidVolume.NotFound), a createVolume "failed" event carries cause,
// and the ClientToken answers IdempotentParameterMismatch from then on.
func (s *Server) FailNextCreates(n int, cause string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults.createFailures = append(s.faults.createFailures, cause)
	}
}

// DelayAttach adds d to the next attachment of the volume.
func (s *Server) DelayAttach(volumeID string, d time.Duration) error {
	return s.withVolume(volumeID, func(v *volume) { v.attachDelay += d })
}

// StickAttach makes the volume's next attachment stay "attaching" until it
// is detached (the stuck attachment ebs-csi gives up on after 90 s).
func (s *Server) StickAttach(volumeID string) error {
	return s.withVolume(volumeID, func(v *volume) { v.stickAttach = true })
}

// StickDetach makes the volume's next detach stay "detaching" until it is
// forced, whatever the guest does.
func (s *Server) StickDetach(volumeID string) error {
	return s.withVolume(volumeID, func(v *volume) { v.stickDetach = true })
}

// PoisonDeviceOnForceDetach makes every force detach from the instance
// leave its device name unusable (AttachVolume: "already in use") until
// RebootInstance, as happens with xen device names.
func (s *Server) PoisonDeviceOnForceDetach(instanceID string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[instanceID]
	if in == nil {
		return fmt.Errorf("ec2sim: %w", errInstanceNotFound(instanceID))
	}
	in.poisonOnForce = on
	return nil
}

func (s *Server) withVolume(id string, fn func(*volume)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[id]
	if v == nil {
		return fmt.Errorf("ec2sim: %w", errVolumeNotFound(id))
	}
	fn(v)
	return nil
}

// VolumeState returns the volume's state and its attachment's state ("" if
// none), for tests that watch the state machine.
func (s *Server) VolumeState(id string) (state, attachment string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[id]
	if v == nil {
		return "", "", fmt.Errorf("ec2sim: %w", errVolumeNotFound(id))
	}
	if v.att != nil {
		attachment = v.att.state
	}
	return v.state, attachment, nil
}

// BackingFile is the sparse file that holds the volume's bytes.
func (s *Server) BackingFile(id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[id]
	if v == nil {
		return "", fmt.Errorf("ec2sim: %w", errVolumeNotFound(id))
	}
	return v.backing, nil
}

// The account's KMS keys. The default EBS key (alias/aws/ebs) exists and is
// enabled; AddKMSKey adds more; DisableKMSKey and ScheduleKMSKeyDeletion
// make one unusable. A create with a key that is unknown or unusable is
// accepted and then fails asynchronously, as EBS does; an attach of a
// volume whose key has become unusable fails with an attachVolume event
// (EBS user guide, "Amazon EventBridge for Amazon EBS").

func (s *Server) keyARN(keyID string) string {
	return "arn:aws:kms:" + s.cfg.Region + ":" + s.cfg.Account + ":key/" + keyID
}

func (s *Server) addDefaultKMSKey() {
	k := &kmsKey{arn: s.keyARN(fmt.Sprintf("%08x-0000-4000-8000-%012x", s.rng.Uint32(), s.rng.Uint64()&0xffffffffffff))}
	s.kms[k.arn], s.kms["alias/aws/ebs"] = k, k
	s.kms[strings.TrimPrefix(k.arn, s.keyARN(""))] = k
}

// AddKMSKey registers an enabled key with id keyID (a UUID) and aliases
// ("alias/name"); it returns the key's ARN.
func (s *Server) AddKMSKey(keyID string, aliases ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := &kmsKey{arn: s.keyARN(keyID)}
	s.kms[k.arn], s.kms[keyID] = k, k
	for _, a := range aliases {
		s.kms[a] = k
		s.kms["arn:aws:kms:"+s.cfg.Region+":"+s.cfg.Account+":"+a] = k
	}
	return k.arn
}

// DisableKMSKey disables the key (by id, ARN or alias).
func (s *Server) DisableKMSKey(key string) error { return s.setKeyState(key, "disabled") }

// ScheduleKMSKeyDeletion puts the key in "pending deletion".
func (s *Server) ScheduleKMSKeyDeletion(key string) error {
	return s.setKeyState(key, "pending deletion")
}

func (s *Server) setKeyState(key, state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kms[key]
	if k == nil {
		return fmt.Errorf("ec2sim: no KMS key %q", key)
	}
	k.state = state
	return nil
}

// resolveKMSKey maps a KmsKeyId to the ARN EC2 reports, and says why a
// create with it will fail ("" if it will not), in the words of the EBS
// guide's samples ("<key ARN> is disabled."). Caller holds s.mu.
func (s *Server) resolveKMSKey(id string) (arn, failCause string) {
	if id == "" {
		id = "alias/aws/ebs"
	}
	k := s.kms[id]
	if k == nil {
		if strings.HasPrefix(id, "arn:") {
			return id, id + " does not exist."
		}
		return s.keyARN(id), s.keyARN(id) + " does not exist."
	}
	return k.arn, keyUnusable(k)
}

// keyCauseLocked says why the key (by ARN) cannot be used now, "" if it can.
// Caller holds s.mu.
func (s *Server) keyCauseLocked(arn string) string {
	k := s.kms[arn]
	if k == nil {
		return arn + " does not exist."
	}
	return keyUnusable(k)
}

func keyUnusable(k *kmsKey) string {
	if k.state == "" {
		return ""
	}
	return k.arn + " is " + k.state + "."
}

// ReattachAfterMaintenance is EBS reattaching the volume to its instance
// after routine server maintenance (EBS user guide, "Amazon EventBridge for
// Amazon EBS": "AWS may attempt to reattach to a volume following routine
// server maintenance"). With the volume's KMS key usable nothing is seen.
// With the key unusable the reattach fails: a reattachVolume event says why
// (the key's ARN in resources[1]) and the guest loses the device, while EC2
// still lists the attachment (what EC2 then shows is not documented; the
// world keeps the attachment, the stricter case for a client).
func (s *Server) ReattachAfterMaintenance(ctx context.Context, volumeID string) error {
	s.mu.Lock()
	v := s.volumes[volumeID]
	if v == nil || v.att == nil || v.att.state != attAttached {
		s.mu.Unlock()
		return fmt.Errorf("ec2sim: volume %s is not attached", volumeID)
	}
	cause := ""
	if v.encrypted {
		cause = s.keyCauseLocked(v.kmsKey)
	}
	if cause == "" {
		s.mu.Unlock()
		return nil
	}
	a := v.att
	host, onHost := s.instances[a.instanceID].host, a.onHost
	a.onHost = false
	s.attachFailedEventLocked(v.id, "reattachVolume", v.kmsKey, cause)
	s.mu.Unlock()
	if onHost && host != nil {
		v.hostMu.Lock()
		defer v.hostMu.Unlock()
		if err := host.DetachDevice(ctx, v.id, true); err != nil && !errors.Is(err, worldapi.ErrHostDown) {
			return fmt.Errorf("ec2sim: reattach of %s: the guest kept the device: %w", volumeID, err)
		}
	}
	return nil
}
