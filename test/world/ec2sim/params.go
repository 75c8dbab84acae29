package ec2sim

import (
	"net/url"
	"strconv"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// One constructor per EC2 error the simulator answers; codes and messages
// follow the EC2 API reference's "Error codes" page.

func errMissing(name string) error {
	return awsproto.BadRequest("MissingParameter", "The request must contain the parameter %s", name)
}

func errInvalidValue(format string, args ...any) error {
	return awsproto.BadRequest("InvalidParameterValue", format, args...)
}

func errCombination(format string, args ...any) error {
	return awsproto.BadRequest("InvalidParameterCombination", format, args...)
}

func errVolumeNotFound(id string) error {
	return awsproto.BadRequest("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
}

func errSnapshotNotFound(id string) error {
	return awsproto.BadRequest("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
}

func errInstanceNotFound(id string) error {
	return awsproto.BadRequest("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
}

func errIncorrectState(format string, args ...any) error {
	return awsproto.BadRequest("IncorrectState", format, args...)
}

func errVolumeInUse(format string, args ...any) error {
	return awsproto.BadRequest("VolumeInUse", format, args...)
}

func errIncorrectInstanceState(format string, args ...any) error {
	return awsproto.BadRequest("IncorrectInstanceState", format, args...)
}

// errAttachmentLimit: the error codes page describes AttachmentLimitExceeded
// as the limit on EBS volumes or network interfaces attached to one
// instance being reached; its message is that description.
func errAttachmentLimit() error {
	return awsproto.BadRequest("AttachmentLimitExceeded",
		"You've reached the limit on the number of Amazon EBS volumes or network interfaces that can be attached to a single instance.")
}

// optInt32 reads an optional integer parameter; ok is false when absent.
func optInt32(form url.Values, name string) (v int32, ok bool, err error) {
	s, present := form[name]
	if !present || len(s) == 0 {
		return 0, false, nil
	}
	n, perr := strconv.ParseInt(s[0], 10, 32)
	if perr != nil {
		return 0, false, errInvalidValue("Value (%s) for parameter %s is invalid. Expected an integer.", s[0], name)
	}
	return int32(n), true, nil
}

// optBool reads an optional boolean parameter.
func optBool(form url.Values, name string) (v, ok bool, err error) {
	s, present := form[name]
	if !present || len(s) == 0 {
		return false, false, nil
	}
	b, perr := strconv.ParseBool(s[0])
	if perr != nil {
		return false, false, errInvalidValue("Value (%s) for parameter %s is invalid. Expected a boolean.", s[0], name)
	}
	return b, true, nil
}

func required(form url.Values, name string) (string, error) {
	v := form.Get(name)
	if v == "" {
		return "", errMissing(name)
	}
	return v, nil
}
