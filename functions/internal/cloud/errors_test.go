package cloud

import (
	"errors"
	"strings"
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
		{"AttachmentLimitExceeded", ErrAttachmentLimit},
		{"UnsupportedOperation", ErrUnsupported},
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
	refused := classify(&smithy.GenericAPIError{Code: "SomethingNew", Fault: smithy.FaultClient}, "ec2 X")
	if !errors.Is(refused, ErrRefused) || errors.Is(classify(&smithy.GenericAPIError{Code: "InternalError", Fault: smithy.FaultServer}, "ec2 X"), ErrRefused) {
		t.Errorf("client faults no sentinel names are ErrRefused, server faults are not: %v", refused)
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

// SSM's model caps Comment at 100 characters; names go up to 200. The
// comment keeps the volume id and the next task's id whole and says when
// the name was cut.
func TestCommandCommentFitsSSM(t *testing.T) {
	long := strings.Repeat("n", 200)
	const next = "0123456789abcdef0123456789abcdef"
	for _, name := range []string{"rexray-vol", long, strings.Repeat("m", 37), strings.Repeat("m", 38), strings.Repeat("m", 75), strings.Repeat("m", 76), strings.Repeat("m", 77)} {
		for _, nx := range []string{"", next} {
			c := CommandComment("vol-0123456789abcdef0", name, nx)
			if len(c) > MaxComment {
				t.Fatalf("comment of %d characters: %q", len(c), c)
			}
			id, got, complete, gotNext := ParseCommandComment(c)
			if id != "vol-0123456789abcdef0" || !strings.HasPrefix(name, got) || complete != (got == name) || gotNext != nx {
				t.Fatalf("%q: parsed %q %q %t %q", c, id, got, complete, gotNext)
			}
		}
	}
	if _, _, complete, _ := ParseCommandComment(CommandComment("vol-0123456789abcdef0", long, next)); complete {
		t.Fatal("a cut name reads as complete")
	}
	if _, name, complete, _ := ParseCommandComment(CommandComment("vol-0123456789abcdef0", strings.Repeat("m", 37), next)); !complete || len(name) != 37 {
		t.Fatalf("a 37-character name with the next task: %q complete %t; want it whole", name, complete)
	}
	for _, c := range []string{"tether vol-0123456789abcdef0 a b", "tether vol-0123456789abcdef0 a b c", "something else"} {
		if id, _, _, _ := ParseCommandComment(c); id != "" {
			t.Errorf("%q parsed as tether's (volume %q)", c, id)
		}
	}
}

// The seed deploys with minimumHealthyPercent 0 / maximumPercent 100; ECS's
// defaults (100 / 200) keep the old task until the new one runs.
func TestServiceKeepsOldTaskDuringDeploy(t *testing.T) {
	for _, c := range []struct {
		desired, min, max int32
		want              bool
	}{
		{1, 100, 200, true}, {1, 50, 200, true}, {1, 0, 100, false}, {1, 0, 200, false},
		{2, 50, 200, false}, {2, 100, 200, true}, {1, 100, 100, false}, {0, 100, 200, false},
	} {
		s := Service{DesiredCount: c.desired, MinimumHealthyPercent: c.min, MaximumPercent: c.max}
		if got := s.KeepsOldTaskDuringDeploy(); got != c.want {
			t.Errorf("%+v: %t, want %t", s, got, c.want)
		}
	}
}
