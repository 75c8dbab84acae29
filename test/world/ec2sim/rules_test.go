package ec2sim

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// apiErr returns the code and message of an AWS error ("", "" for nil).
func apiErr(t *testing.T, err error) (string, string) {
	t.Helper()
	if err == nil {
		return "", ""
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("not an API error: %v", err)
	}
	return ae.ErrorCode(), ae.ErrorMessage()
}

// TestVolumeTypeLimits holds CreateVolume to EBS's per-type rules (the
// sizes, IOPS and throughput of the EC2 API reference, the ratios of the
// EBS user guide) through the SDK, boundaries on both sides, with EC2's
// codes and, where public bug reports show it, EC2's wording.
func TestVolumeTypeLimits(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	type vol struct {
		typ        types.VolumeType
		size       int32
		iops, thr  int32 // 0: not given
		multi      bool
		wantCode   string // "" accepted
		wantInMsg  string
		wantIops   int32 // when accepted: as DescribeVolumes reports it
		wantThrput int32
	}
	cases := []vol{
		// Sizes.
		{typ: "gp2", size: 1, wantIops: 100},
		{typ: "gp2", size: 16384, wantIops: 16000},
		{typ: "gp2", size: 16385, wantCode: "InvalidParameterValue", wantInMsg: "Volume of 16385GiB is too large for volume type gp2; maximum is 16384GiB"},
		{typ: "gp2", size: 0, wantCode: "InvalidParameterValue", wantInMsg: "too small for volume type gp2; minimum is 1GiB"},
		{typ: "gp3", size: 65536, wantIops: 3000, wantThrput: 125},
		{typ: "gp3", size: 65537, wantCode: "InvalidParameterValue", wantInMsg: "maximum is 65536GiB"},
		{typ: "io1", size: 3, iops: 100, wantCode: "InvalidParameterValue", wantInMsg: "minimum is 4GiB"},
		{typ: "io1", size: 16384, iops: 64000, wantIops: 64000},
		{typ: "io1", size: 16385, iops: 100, wantCode: "InvalidParameterValue", wantInMsg: "maximum is 16384GiB"},
		{typ: "io2", size: 65536, iops: 100, wantIops: 100},
		{typ: "io2", size: 65537, iops: 100, wantCode: "InvalidParameterValue"},
		{typ: "st1", size: 124, wantCode: "InvalidParameterValue", wantInMsg: "minimum is 125GiB"},
		{typ: "st1", size: 125},
		{typ: "sc1", size: 16385, wantCode: "InvalidParameterValue"},
		{typ: "standard", size: 1024},
		{typ: "standard", size: 1025, wantCode: "InvalidParameterValue", wantInMsg: "Volume of 1025GiB is too large for volume type standard; maximum is 1024GiB"},
		// IOPS: required for io1/io2, refused for gp2/st1/sc1/standard.
		{typ: "io1", size: 10, wantCode: "InvalidParameterCombination", wantInMsg: "The parameter iops must be specified for io1 volumes."},
		{typ: "io2", size: 10, wantCode: "InvalidParameterCombination", wantInMsg: "The parameter iops must be specified for io2 volumes."},
		{typ: "gp2", size: 10, iops: 300, wantCode: "InvalidParameterCombination", wantInMsg: "The parameter iops is not supported for gp2 volumes."},
		{typ: "st1", size: 500, iops: 500, wantCode: "InvalidParameterCombination", wantInMsg: "The parameter iops is not supported for st1 volumes."},
		{typ: "standard", size: 10, iops: 100, wantCode: "InvalidParameterCombination"},
		// IOPS ranges and ratios: gp3 3,000-80,000 at 500/GiB above its
		// baseline; io1 100-64,000 at 50/GiB; io2 100-256,000 at 1,000/GiB.
		{typ: "gp3", size: 1, iops: 3000, wantIops: 3000, wantThrput: 125},
		{typ: "gp3", size: 1, iops: 2999, wantCode: "InvalidParameterValue", wantInMsg: "Volume iops of 2999 is too low; minimum is 3000."},
		{typ: "gp3", size: 7, iops: 3501, wantCode: "InvalidParameterValue", wantInMsg: "Iops to volume size ratio of 500.142857 is too high; maximum is 500"},
		{typ: "gp3", size: 160, iops: 80000, wantIops: 80000, wantThrput: 125},
		{typ: "gp3", size: 200, iops: 80001, wantCode: "InvalidParameterValue", wantInMsg: "maximum is 80000"},
		{typ: "io1", size: 10, iops: 500, wantIops: 500},
		{typ: "io1", size: 10, iops: 501, wantCode: "InvalidParameterValue", wantInMsg: "maximum is 50"},
		{typ: "io1", size: 10, iops: 99, wantCode: "InvalidParameterValue", wantInMsg: "minimum is 100"},
		{typ: "io2", size: 10, iops: 10000, wantIops: 10000},
		{typ: "io2", size: 10, iops: 10001, wantCode: "InvalidParameterValue", wantInMsg: "maximum is 1000"},
		{typ: "io2", size: 300, iops: 256001, wantCode: "InvalidParameterValue", wantInMsg: "maximum is 256000"},
		// Throughput: gp3 only, 125-2,000 MiB/s, at most 0.25 MiB/s per IOPS.
		{typ: "gp3", size: 10, iops: 3000, thr: 750, wantIops: 3000, wantThrput: 750},
		{typ: "gp3", size: 10, iops: 3000, thr: 751, wantCode: "InvalidParameterValue", wantInMsg: "Throughput (MiBps) to iops ratio of 0.250333 is too high; maximum is 0.250000 MiBps per iops"},
		{typ: "gp3", size: 100, iops: 8000, thr: 2000, wantIops: 8000, wantThrput: 2000},
		{typ: "gp3", size: 100, iops: 12000, thr: 2001, wantCode: "InvalidParameterValue", wantInMsg: "too high; maximum is 2000 MiBps"},
		{typ: "gp3", size: 10, thr: 124, wantCode: "InvalidParameterValue", wantInMsg: "minimum is 125 MiBps"},
		{typ: "io1", size: 10, iops: 100, thr: 125, wantCode: "InvalidParameterCombination", wantInMsg: "throughput can only be specified for volumeType gp3."},
		{typ: "gp2", size: 10, thr: 125, wantCode: "InvalidParameterCombination"},
		// Multi-Attach: io1 and io2 only.
		{typ: "io2", size: 10, iops: 1000, multi: true, wantIops: 1000},
		{typ: "io1", size: 10, iops: 100, multi: true, wantIops: 100},
		{typ: "gp3", size: 10, multi: true, wantCode: "InvalidParameterCombination", wantInMsg: "io1 and io2"},
		{typ: "gp2", size: 10, multi: true, wantCode: "InvalidParameterCombination"},
	}
	for _, c := range cases {
		name := string(c.typ) + " " + itoa(c.size) + "GiB iops " + itoa(c.iops) + " throughput " + itoa(c.thr) + " multi " + btoa(c.multi)
		in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(c.size), VolumeType: c.typ}
		if c.iops != 0 {
			in.Iops = aws.Int32(c.iops)
		}
		if c.thr != 0 {
			in.Throughput = aws.Int32(c.thr)
		}
		if c.multi {
			in.MultiAttachEnabled = aws.Bool(true)
		}
		out, err := w.ec2.CreateVolume(ctx, in)
		gotCode, msg := apiErr(t, err)
		if gotCode != c.wantCode || !strings.Contains(msg, c.wantInMsg) {
			t.Errorf("%s: got %q %q, want %q containing %q", name, gotCode, msg, c.wantCode, c.wantInMsg)
			continue
		}
		if err != nil {
			continue
		}
		id := aws.ToString(out.VolumeId)
		w.waitState(t, id, "available", "")
		d, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		v := d.Volumes[0]
		if aws.ToInt32(v.Iops) != c.wantIops || aws.ToInt32(v.Throughput) != c.wantThrput || aws.ToBool(v.MultiAttachEnabled) != c.multi ||
			aws.ToInt32(v.Size) != c.size {
			t.Errorf("%s: described size %d iops %d throughput %d multi %v, want %d %d %d %v", name, aws.ToInt32(v.Size),
				aws.ToInt32(v.Iops), aws.ToInt32(v.Throughput), aws.ToBool(v.MultiAttachEnabled), c.size, c.wantIops, c.wantThrput, c.multi)
		}
		// The world's file system holds no 64 TiB file: EC2's answer is
		// the same, only the backing file is capped (backing.go).
		if _, err := w.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestModifyVolumeTypeLimits: ModifyVolume applies the same rules to the
// volume it would make (EC2 API reference, ModifyVolume).
func TestModifyVolumeTypeLimits(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		from     ec2.CreateVolumeInput
		mod      ec2.ModifyVolumeInput
		wantCode string
	}{
		{"gp2 past 16 TiB", ec2.CreateVolumeInput{Size: aws.Int32(100), VolumeType: "gp2"}, ec2.ModifyVolumeInput{Size: aws.Int32(16385)}, "InvalidParameterValue"},
		{"gp2 to gp3 at 64 TiB", ec2.CreateVolumeInput{Size: aws.Int32(100), VolumeType: "gp2"}, ec2.ModifyVolumeInput{Size: aws.Int32(65536), VolumeType: "gp3"}, ""},
		{"gp2 iops", ec2.CreateVolumeInput{Size: aws.Int32(100), VolumeType: "gp2"}, ec2.ModifyVolumeInput{Iops: aws.Int32(3000)}, "InvalidParameterCombination"},
		{"gp3 ratio", ec2.CreateVolumeInput{Size: aws.Int32(10), VolumeType: "gp3"}, ec2.ModifyVolumeInput{Iops: aws.Int32(5001)}, "InvalidParameterValue"},
		{"gp3 throughput ratio", ec2.CreateVolumeInput{Size: aws.Int32(10), VolumeType: "gp3"}, ec2.ModifyVolumeInput{Throughput: aws.Int32(751)}, "InvalidParameterValue"},
		// Changing to io1 without Iops means 3,000 IOPS: 30 per GiB here,
		// 300 per GiB (over io1's 50) on a 10 GiB volume.
		{"to io1 at 3000 iops", ec2.CreateVolumeInput{Size: aws.Int32(100), VolumeType: "gp2"}, ec2.ModifyVolumeInput{VolumeType: "io1"}, ""},
		{"to io1 at 3000 iops, too small", ec2.CreateVolumeInput{Size: aws.Int32(10), VolumeType: "gp2"}, ec2.ModifyVolumeInput{VolumeType: "io1"}, "InvalidParameterValue"},
		{"to st1 too small", ec2.CreateVolumeInput{Size: aws.Int32(100), VolumeType: "gp2"}, ec2.ModifyVolumeInput{VolumeType: "st1"}, "InvalidParameterValue"},
		{"multi-attach on gp3", ec2.CreateVolumeInput{Size: aws.Int32(10), VolumeType: "gp3"}, ec2.ModifyVolumeInput{MultiAttachEnabled: aws.Bool(true)}, "InvalidParameterCombination"},
		{"multi-attach on io2", ec2.CreateVolumeInput{Size: aws.Int32(10), VolumeType: "io2", Iops: aws.Int32(100)}, ec2.ModifyVolumeInput{MultiAttachEnabled: aws.Bool(true)}, ""},
	} {
		from := c.from
		from.AvailabilityZone = aws.String(azA)
		id := w.createVolume(t, &from)
		mod := c.mod
		mod.VolumeId = aws.String(id)
		_, err := w.ec2.ModifyVolume(ctx, &mod)
		if got, msg := apiErr(t, err); got != c.wantCode {
			t.Errorf("%s: got %q %q, want %q", c.name, got, msg, c.wantCode)
		}
	}
}
