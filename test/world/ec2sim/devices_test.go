package ec2sim

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// TestDeviceNames: AttachVolume takes EC2's Linux EBS names only
// (/dev/sd[b-z], /dev/xvd[b-z], /dev/xvd[a-c][a-z], /dev/xvdd[a-x]) and
// refuses a name the instance already uses, in EC2's words.
func TestDeviceNames(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.addInstance(t, instA, azA)
	for _, dev := range []string{"/dev/sdb", "/dev/sdz", "/dev/xvdb", "/dev/xvdz", "/dev/xvdaa", "/dev/xvdcz", "/dev/xvdda", "/dev/xvddx"} {
		vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
		if err := attach(t, w, vol, instA, dev); err != nil {
			t.Errorf("%s refused: %v", dev, err)
		}
	}
	spare := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	for _, dev := range []string{"/dev/xvdza", "/dev/xvddy", "/dev/xvdea", "/dev/xvdba1", "/dev/sda", "/dev/sda1", "/dev/sdf1",
		"/dev/xvda", "/dev/nvme1n1", "xvdf", "/dev/hdf", "/dev/xvdF"} {
		code, msg := apiErr(t, attach(t, w, spare, instA, dev))
		want := "Value (" + dev + ") for parameter device is invalid. " + dev + " is not a valid EBS device name."
		if code != "InvalidParameterValue" || msg != want {
			t.Errorf("%s: %q %q, want InvalidParameterValue %q", dev, code, msg, want)
		}
	}
	// In use: by an attachment in any state, by the root volume, by a name a
	// force detach left unusable.
	detaching := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if err := attach(t, w, detaching, instA, "/dev/sdf"); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, detaching, "in-use", "attached")
	if err := w.srv.StickDetach(detaching); err != nil {
		t.Fatal(err)
	}
	if err := detach(t, w, detaching, false); err != nil {
		t.Fatal(err)
	}
	w.waitState(t, detaching, "in-use", "detaching")
	for _, dev := range []string{"/dev/xvdb", "/dev/sdf"} {
		code, msg := apiErr(t, attach(t, w, spare, instA, dev))
		want := fmt.Sprintf("Invalid value '%s' for unixDevice. Attachment point %s is already in use", dev, dev)
		if code != "InvalidParameterValue" || msg != want {
			t.Errorf("%s in use: %q %q, want InvalidParameterValue %q", dev, code, msg, want)
		}
	}
	// The root device's name is taken too (and is no data volume name).
	di, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instA}})
	if err != nil {
		t.Fatal(err)
	}
	root := aws.ToString(di.Reservations[0].Instances[0].RootDeviceName)
	if code, _ := apiErr(t, attach(t, w, spare, instA, root)); code != "InvalidParameterValue" {
		t.Errorf("root device %s: %q", root, code)
	}
	// The same name on another instance is free.
	w.addInstance(t, instB, azA)
	if err := attach(t, w, spare, instB, "/dev/xvdb"); err != nil {
		t.Errorf("a name used on another instance: %v", err)
	}
}

// TestAttachmentLimitSharedWithNetworkInterfaces: a t3.medium (Nitro) has
// 28 attachments for its network interfaces and EBS volumes together (EC2
// user guide, "Instance volume limits"): with its primary interface and
// root volume, 26 data volumes fit; a second interface leaves room for 25.
// A dedicated-limit type (m7i.large: 32 EBS volumes) does not count them.
func TestAttachmentLimitSharedWithNetworkInterfaces(t *testing.T) {
	w := newWorld(t)
	w.srv.SetThrottling(false)   // 58 attaches: more than AttachVolume's bucket of 50
	w.addInstance(t, instA, azA) // t3.medium
	names := dataDeviceNames()
	fill := func(inst string, n int) {
		t.Helper()
		for i := range n {
			vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
			if err := attach(t, w, vol, inst, names[i]); err != nil {
				t.Fatalf("%s: data volume %d of %d: %v", inst, i+1, n, err)
			}
		}
	}
	fill(instA, 25)
	if err := w.srv.SetNetworkInterfaces(instA, 2); err != nil {
		t.Fatal(err)
	}
	extra := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	code, msg := apiErr(t, attach(t, w, extra, instA, names[25]))
	if code != "AttachmentLimitExceeded" || !strings.Contains(msg, "limit on the number of Amazon EBS volumes or network interfaces") {
		t.Errorf("26th data volume with two interfaces: %q %q, want AttachmentLimitExceeded", code, msg)
	}
	if err := w.srv.SetNetworkInterfaces(instA, 1); err != nil {
		t.Fatal(err)
	}
	if err := attach(t, w, extra, instA, names[25]); err != nil {
		t.Fatalf("26th data volume with one interface: %v", err)
	}
	last := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	if code, _ := apiErr(t, attach(t, w, last, instA, names[26])); code != "AttachmentLimitExceeded" {
		t.Errorf("27th data volume: %q, want AttachmentLimitExceeded", code)
	}

	if err := w.srv.AddInstance(InstanceSpec{ID: instB, AZ: azA, Type: "m7i.large", Host: newFakeHost(instB), NetworkInterfaces: 4}); err != nil {
		t.Fatal(err)
	}
	fill(instB, 31)
	if code, _ := apiErr(t, attach(t, w, last, instB, names[31])); code != "AttachmentLimitExceeded" {
		t.Errorf("m7i.large, 32nd data volume: %q, want AttachmentLimitExceeded", code)
	}
	if err := w.srv.AddInstance(InstanceSpec{ID: instC, AZ: azB, Type: "x9z.huge"}); err == nil || !strings.Contains(err.Error(), "attachment limit") {
		t.Errorf("an instance type with no known limit: %v", err)
	}
}

// dataDeviceNames are valid data volume names, enough for any instance.
func dataDeviceNames() []string {
	var out []string
	for c := 'b'; c <= 'z'; c++ {
		out = append(out, "/dev/xvd"+string(c))
	}
	for c := 'a'; c <= 'c'; c++ {
		for d := 'a'; d <= 'z'; d++ {
			out = append(out, "/dev/xvd"+string(c)+string(d))
		}
	}
	return out
}
