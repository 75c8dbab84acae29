package cloud

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"
)

// A modification in progress (IncorrectModificationState) is the same
// too-soon error as the cooldown, marked in progress, with when the next
// is allowed read from DescribeVolumesModifications; the request carries
// only what changes.
func TestModifyVolumeInProgressThroughTheSDK(t *testing.T) {
	const vol = "vol-0123456789abcdef0"
	e, base := newEndpoint(t, func(action string, form url.Values, _ string, _ int) (int, string) {
		switch action {
		case "EC2:ModifyVolume":
			return 400, ec2Error("IncorrectModificationState")
		case "EC2:DescribeVolumesModifications":
			return 200, `<DescribeVolumesModificationsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><volumeModificationSet><item>` +
				`<volumeId>` + vol + `</volumeId><modificationState>optimizing</modificationState><targetSize>8</targetSize><originalSize>5</originalSize>` +
				`<targetVolumeType>gp3</targetVolumeType><originalVolumeType>gp2</originalVolumeType><targetIops>3000</targetIops><progress>40</progress>` +
				`<startTime>2024-05-01T12:00:00.000Z</startTime></item></volumeModificationSet></DescribeVolumesModificationsResponse>`
		}
		return 400, ec2Error("InvalidAction")
	})
	c := newTestCloud(t, base, Options{BatchWindow: -1})
	_, err := c.ModifyVolume(context.Background(), vol, VolumeChange{SizeGiB: 9})
	var soon *ModifyTooSoonError
	if !errors.As(err, &soon) || !errors.Is(err, ErrModifyTooSoon) {
		t.Fatalf("in progress: %v, want ModifyTooSoonError", err)
	}
	if want := time.Date(2024, 5, 1, 18, 0, 0, 0, time.UTC); !soon.InProgress || !soon.NotBefore.Equal(want) {
		t.Errorf("too soon: %+v, want in progress, not before %s", soon, want)
	}
	f := e.forms[0]
	if f.Get("VolumeId") != vol || f.Get("Size") != "9" || f.Get("VolumeType") != "" || f.Get("Iops") != "" || f.Get("Throughput") != "" {
		t.Errorf("ModifyVolume form: %v", f)
	}
	if e.count("EC2:ModifyVolume") != 1 {
		t.Errorf("a refusal is not retried: %d ModifyVolume calls", e.count("EC2:ModifyVolume"))
	}
	m, err := c.VolumeModification(context.Background(), vol)
	if err != nil || m.State != ModOptimizing || !m.InForce() || m.Finished() || m.TargetSizeGiB != 8 || m.OriginalType != "gp2" || m.TargetIOPS != 3000 || m.Progress != 40 {
		t.Errorf("VolumeModification: %+v, %v", m, err)
	}
}
