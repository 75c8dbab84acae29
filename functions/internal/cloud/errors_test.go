package cloud

import (
	"errors"
	"testing"

	"github.com/aws/smithy-go"
)

func TestClassifyKeepsTheCauseAndNamesTheKind(t *testing.T) {
	cases := []struct {
		code string
		want error
	}{
		{"InvalidVolume.NotFound", ErrNotFound},
		{"InvalidInstanceID.NotFound", ErrNotFound},
		{"InvalidAttachment.NotFound", ErrNotFound},
		{"InvocationDoesNotExist", ErrNotFound},
		{"IncorrectState", ErrIncorrectState},
		{"IncorrectInstanceState", ErrIncorrectState},
		{"VolumeInUse", ErrVolumeInUse},
		{"IdempotentParameterMismatch", ErrTokenMismatch},
		{"InvalidVolume.ZoneMismatch", ErrZoneMismatch},
		{"RequestLimitExceeded", ErrThrottled},
		{"ThrottlingException", ErrThrottled},
		{"InvalidInstanceId", ErrUnreachable},
	}
	for _, c := range cases {
		cause := &smithy.GenericAPIError{Code: c.code, Message: "m"}
		err := classify(cause, `ec2 X "vol-1"`)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v is not %v", c.code, err, c.want)
		}
		var apiErr smithy.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode() != c.code {
			t.Errorf("%s: cause lost in %v", c.code, err)
		}
	}
	other := classify(&smithy.GenericAPIError{Code: "UnauthorizedOperation"}, "ec2 X")
	for _, s := range []error{ErrNotFound, ErrThrottled, ErrIncorrectState, ErrVolumeInUse, ErrTokenMismatch} {
		if errors.Is(other, s) {
			t.Errorf("unrelated code classified as %v", s)
		}
	}
	if classify(nil, "x") != nil {
		t.Error("nil error classified")
	}
	if !IsDone(classify(&smithy.GenericAPIError{Code: "IncorrectState"}, "detach")) || IsDone(other) {
		t.Error("IsDone: detach of a detached volume is done, other errors are not")
	}
}

func TestTruncateReasonKeepsRunesWhole(t *testing.T) {
	long := ""
	for len(long) < 300 {
		long += "é"
	}
	got := TruncateReason(long)
	if len(got) > MaxStopReason || len(got) < MaxStopReason-1 {
		t.Fatalf("len %d", len(got))
	}
	for _, r := range got {
		if r == '\uFFFD' {
			t.Fatal("cut inside a rune")
		}
	}
	if TruncateReason("short") != "short" {
		t.Fatal("short reason changed")
	}
}
