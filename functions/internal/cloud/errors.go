package cloud

import (
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// Sentinel errors. The AWS error stays in the chain (errors.As to
// smithy.APIError still works); callers decide with errors.Is.
var (
	ErrNotFound       = errors.New("not found")
	ErrThrottled      = errors.New("throttled by AWS")
	ErrIncorrectState = errors.New("resource in the wrong state for this action")
	ErrVolumeInUse    = errors.New("volume in use")
	ErrTokenMismatch  = errors.New("client token already used by another request")
	ErrZoneMismatch   = errors.New("volume and instance are in different availability zones")
	ErrDeviceName     = errors.New("device name refused")
	ErrUnreachable    = errors.New("instance not reachable through SSM")
	ErrInvalidRequest = errors.New("request refused as invalid")
	// ErrAttachmentLimit: the instance has no free EBS attachment slot
	// (AttachmentLimitExceeded; on Nitro, ENIs share the slots).
	ErrAttachmentLimit = errors.New("instance attachment limit reached")
	// ErrUnsupported: EC2 will not do this for this instance or volume
	// (UnsupportedOperation): retrying cannot help.
	ErrUnsupported = errors.New("operation not supported for this instance or volume")
	// ErrRefused: any other refusal of the request itself (a client fault
	// no sentinel above names). It may need a person; callers bound it.
	ErrRefused = errors.New("request refused")
	// ErrAttachmentChanged: the attachment a detach was judged for is no
	// longer the volume's (read right before the request); nothing was asked.
	ErrAttachmentChanged = errors.New("attachment changed since it was judged")
)

// EC2, ECS and SSM error codes tether acts on. The local world must answer
// with the same codes.
const (
	codeVolumeNotFound      = "InvalidVolume.NotFound"
	codeInstanceNotFound    = "InvalidInstanceID.NotFound"
	codeAttachmentNotFound  = "InvalidAttachment.NotFound"
	codeIncorrectState      = "IncorrectState"
	codeIncorrectInstState  = "IncorrectInstanceState"
	codeVolumeInUse         = "VolumeInUse"
	codeIdempotentMismatch  = "IdempotentParameterMismatch"
	codeZoneMismatch        = "InvalidVolume.ZoneMismatch"
	codeInvalidParameter    = "InvalidParameterValue"
	codeSSMInvalidInstance  = "InvalidInstanceId"
	codeSSMNoInvocation     = "InvocationDoesNotExist"
	codeSSMInvalidCommandID = "InvalidCommandId"
	codeSSMInvalidPlugin    = "InvalidPluginName"
	codeECSClient           = "ClientException"
	codeECSInvalidParameter = "InvalidParameterException"
	codeAttachmentLimit     = "AttachmentLimitExceeded"
	codeUnsupported         = "UnsupportedOperation"
	codeECSServiceNotFound  = "ServiceNotFoundException"
)

func apiCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

func isVolumeNotFound(err error) bool     { return apiCode(err) == codeVolumeNotFound }
func isInstanceNotFound(err error) bool   { return apiCode(err) == codeInstanceNotFound }
func isAttachmentNotFound(err error) bool { return apiCode(err) == codeAttachmentNotFound }
func isIncorrectState(err error) bool {
	c := apiCode(err)
	return c == codeIncorrectState || c == codeIncorrectInstState
}
func isVolumeInUse(err error) bool           { return apiCode(err) == codeVolumeInUse }
func isIdempotentMismatch(err error) bool    { return apiCode(err) == codeIdempotentMismatch }
func isZoneMismatch(err error) bool          { return apiCode(err) == codeZoneMismatch }
func isInvalidParameterValue(err error) bool { return apiCode(err) == codeInvalidParameter }
func isSSMInvalidInstance(err error) bool    { return apiCode(err) == codeSSMInvalidInstance }

// isSSMNoInvocation: SSM has no answer for the invocation (yet). For a
// named step of a document of several steps, SSM answers InvalidPluginName
// until that step's result reached it.
func isSSMNoInvocation(err error) bool {
	c := apiCode(err)
	return c == codeSSMNoInvocation || c == codeSSMInvalidCommandID || c == codeSSMInvalidPlugin
}

// isClientFault: AWS refused the request itself (HTTP 4xx), as opposed to
// failing to serve it (5xx, network): retrying the same request the same
// way will not help by itself.
func isClientFault(err error) bool {
	var resp *awshttp.ResponseError
	if errors.As(err, &resp) {
		return resp.HTTPStatusCode() >= 400 && resp.HTTPStatusCode() < 500
	}
	var apiErr smithy.APIError // no HTTP answer (fakes): the error's own fault
	return errors.As(err, &apiErr) && apiErr.ErrorFault() == smithy.FaultClient
}

// isThrottle uses the SDK's own list (RequestLimitExceeded, Throttling,
// ThrottlingException, TooManyRequestsException, ...), so what the retryer
// backs off on and what tether reports as throttling are the same codes.
func isThrottle(err error) bool {
	c := apiCode(err)
	if c == "" {
		return false
	}
	_, ok := retry.DefaultThrottleErrorCodes[c]
	return ok
}

// classify wraps err with the sentinel its code means, keeping the cause.
// what names the call and its ids (quoted by the caller).
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch {
	case isThrottle(err):
		sentinel = ErrThrottled
	case isVolumeNotFound(err), isInstanceNotFound(err), isAttachmentNotFound(err), isSSMNoInvocation(err):
		sentinel = ErrNotFound
	case isIncorrectState(err):
		sentinel = ErrIncorrectState
	case isVolumeInUse(err):
		sentinel = ErrVolumeInUse
	case isIdempotentMismatch(err):
		sentinel = ErrTokenMismatch
	case isZoneMismatch(err):
		sentinel = ErrZoneMismatch
	case isSSMInvalidInstance(err):
		sentinel = ErrUnreachable
	case apiCode(err) == codeAttachmentLimit:
		sentinel = ErrAttachmentLimit
	case apiCode(err) == codeUnsupported:
		sentinel = ErrUnsupported
	case isClientFault(err):
		sentinel = ErrRefused
	}
	if sentinel == nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %w", sentinel, what, err)
}
