package ec2sim

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sys/unix"
)

func TestDescribeVolumesPagination(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	want := map[string]bool{}
	for range 12 {
		want[w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})] = true
	}
	p := ec2.NewDescribeVolumesPaginator(w.ec2, &ec2.DescribeVolumesInput{MaxResults: aws.Int32(5)})
	pages, seen := 0, map[string]bool{}
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, v := range out.Volumes {
			if seen[*v.VolumeId] {
				t.Errorf("%s on two pages", *v.VolumeId)
			}
			seen[*v.VolumeId] = true
		}
	}
	if pages != 3 || len(seen) != 12 {
		t.Errorf("%d pages, %d volumes; want 3 and 12", pages, len(seen))
	}
	for name, c := range map[string]struct {
		in   *ec2.DescribeVolumesInput
		want string
	}{
		"max 4":            {&ec2.DescribeVolumesInput{MaxResults: aws.Int32(4)}, "InvalidParameterValue"},
		"ids and max":      {&ec2.DescribeVolumesInput{MaxResults: aws.Int32(5), VolumeIds: []string{"vol-0000000000000000f"}}, "InvalidParameterCombination"},
		"bogus token":      {&ec2.DescribeVolumesInput{NextToken: aws.String("nope")}, "InvalidPaginationToken"},
		"filter no values": {&ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("status")}}}, "InvalidParameterValue"},
	} {
		_, err := w.ec2.DescribeVolumes(ctx, c.in)
		if got := code(t, err); got != c.want {
			t.Errorf("%s: %q, want %s", name, got, c.want)
		}
	}
	out, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{MaxResults: aws.Int32(1000)})
	if err != nil || len(out.Volumes) != 12 || out.NextToken != nil {
		t.Errorf("MaxResults over 500 is capped, not refused: %d %v", len(out.Volumes), err)
	}
}

func TestSnapshotsCopySparseBytes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(2)})
	backing, _ := w.srv.BackingFile(vol)
	f, err := os.OpenFile(backing, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	const off = 1<<30 + 4096
	if _, err := f.WriteAt([]byte("tether was here"), off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	snap, err := w.ec2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(vol), Description: aws.String("before move"),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSnapshot, Tags: []types.Tag{{Key: aws.String("tether:volume"), Value: aws.String("db")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if snap.State != types.SnapshotStatePending || aws.ToInt32(snap.VolumeSize) != 2 || aws.ToString(snap.OwnerId) != "123456789012" {
		t.Errorf("CreateSnapshot answered %+v", snap)
	}
	done := ec2.NewSnapshotCompletedWaiter(w.ec2, func(o *ec2.SnapshotCompletedWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
	})
	if err := done.Wait(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{*snap.SnapshotId}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ds, err := w.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"},
		Filters: []types.Filter{{Name: aws.String("tag:tether:volume"), Values: []string{"db"}}, {Name: aws.String("volume-id"), Values: []string{vol}}}})
	if err != nil || len(ds.Snapshots) != 1 || aws.ToString(ds.Snapshots[0].Progress) != "100%" {
		t.Fatalf("DescribeSnapshots: %+v %v", ds, err)
	}
	if _, err := w.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"amazon"}}); code(t, err) != "InvalidParameterValue" {
		t.Errorf("other owners: %v", err)
	}

	// A larger volume from the snapshot has the bytes, and stays sparse.
	restored := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azB), SnapshotId: snap.SnapshotId, Size: aws.Int32(3)})
	rb, _ := w.srv.BackingFile(restored)
	rf, err := os.Open(rb)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	data := make([]byte, 15)
	if _, err := rf.ReadAt(data, off); err != nil {
		t.Fatal(err)
	}
	if st, _ := rf.Stat(); st.Size() != 3<<30 || string(data) != "tether was here" {
		t.Fatalf("restored volume: size %d, bytes %q", st.Size(), data)
	}
	var st unix.Stat_t
	if err := unix.Stat(rb, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 16<<20 {
		t.Errorf("restored volume uses %d bytes on disk: not sparse", used)
	}
	if _, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), SnapshotId: snap.SnapshotId, Size: aws.Int32(1)}); code(t, err) != "InvalidParameterValue" {
		t.Errorf("volume smaller than its snapshot: %v", err)
	}
	if _, err := w.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: snap.SnapshotId}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{*snap.SnapshotId}}); code(t, err) != "InvalidSnapshot.NotFound" {
		t.Errorf("deleted snapshot: %v", err)
	}
}

func TestModifyVolumeGrowsBackingFile(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.ModifyCooldown = time.Hour })
	ctx := context.Background()
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1), VolumeType: types.VolumeTypeGp2})
	out, err := w.ec2.ModifyVolume(ctx, &ec2.ModifyVolumeInput{VolumeId: aws.String(vol), Size: aws.Int32(4), VolumeType: types.VolumeTypeGp3})
	if err != nil {
		t.Fatal(err)
	}
	m := out.VolumeModification
	if m.ModificationState != types.VolumeModificationStateModifying || aws.ToInt32(m.OriginalSize) != 1 || aws.ToInt32(m.TargetSize) != 4 ||
		m.TargetVolumeType != types.VolumeTypeGp3 || aws.ToInt32(m.TargetIops) != 3000 {
		t.Errorf("ModifyVolume answered %+v", m)
	}
	eventually(t, "modification completed", func() (bool, string) {
		d, err := w.ec2.DescribeVolumesModifications(ctx, &ec2.DescribeVolumesModificationsInput{VolumeIds: []string{vol}})
		if err != nil {
			return false, err.Error()
		}
		return d.VolumesModifications[0].ModificationState == types.VolumeModificationStateCompleted, string(d.VolumesModifications[0].ModificationState)
	})
	backing, _ := w.srv.BackingFile(vol)
	if st, _ := os.Stat(backing); st.Size() != 4<<30 {
		t.Errorf("backing file %d bytes, want 4 GiB", st.Size())
	}
	d, _ := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
	if aws.ToInt32(d.Volumes[0].Size) != 4 || d.Volumes[0].VolumeType != types.VolumeTypeGp3 {
		t.Errorf("after modification: %+v", d.Volumes[0])
	}
	// The EBS guide documents one modifyVolume event, "optimizing".
	if !hasEvent(w, vol, "modifyVolume", "optimizing", "") || hasEvent(w, vol, "modifyVolume", "completed", "") {
		t.Errorf("modifyVolume events: want optimizing only: %v", eventKinds(w, vol))
	}
	if _, err := w.ec2.ModifyVolume(ctx, &ec2.ModifyVolumeInput{VolumeId: aws.String(vol), Size: aws.Int32(8)}); code(t, err) != "VolumeModificationRateExceeded" {
		t.Errorf("second modification within the cooldown: %v", err)
	}
	other := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(4)})
	if _, err := w.ec2.ModifyVolume(ctx, &ec2.ModifyVolumeInput{VolumeId: aws.String(other), Size: aws.Int32(2)}); code(t, err) != "InvalidParameterValue" {
		t.Errorf("shrink: %v", err)
	}
	if _, err := w.ec2.DescribeVolumesModifications(ctx, &ec2.DescribeVolumesModificationsInput{VolumeIds: []string{other}}); code(t, err) != "InvalidVolumeModification.NotFound" {
		t.Errorf("never modified: %v", err)
	}
}

func TestTagsOnVolumesSnapshotsInstances(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.addInstance(t, instA, azA)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})
	snap, err := w.ec2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: aws.String(vol)})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{vol, *snap.SnapshotId, instA}
	if _, err := w.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: ids, Tags: []types.Tag{
		{Key: aws.String("tether:cluster"), Value: aws.String("c1")}, {Key: aws.String("keep"), Value: aws.String("")}}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, value string }{{"tag:tether:cluster", "c1"}, {"tag-key", "keep"}} {
		dv, _ := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String(f.name), Values: []string{f.value}}}})
		ds, _ := w.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{Filters: []types.Filter{{Name: aws.String(f.name), Values: []string{f.value}}}})
		di, _ := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String(f.name), Values: []string{f.value}}}})
		if len(dv.Volumes) != 1 || len(ds.Snapshots) != 1 || len(di.Reservations) != 1 {
			t.Errorf("filter %s: %d volumes, %d snapshots, %d reservations", f.name, len(dv.Volumes), len(ds.Snapshots), len(di.Reservations))
		}
	}
	// A value that does not match keeps the tag; no value removes it.
	if _, err := w.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{vol}, Tags: []types.Tag{
		{Key: aws.String("tether:cluster"), Value: aws.String("other")}, {Key: aws.String("keep")}}}); err != nil {
		t.Fatal(err)
	}
	d, _ := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
	if tags := d.Volumes[0].Tags; len(tags) != 1 || aws.ToString(tags[0].Key) != "tether:cluster" {
		t.Errorf("tags after DeleteTags: %+v", tags)
	}
	for name, c := range map[string]struct {
		ids  []string
		want string
	}{
		"missing volume":   {[]string{"vol-0000000000000000f"}, "InvalidVolume.NotFound"},
		"missing snapshot": {[]string{"snap-0000000000000000f"}, "InvalidSnapshot.NotFound"},
		"missing instance": {[]string{"i-0000000000000000f"}, "InvalidInstanceID.NotFound"},
		"bad id":           {[]string{"sg-123"}, "InvalidID"},
	} {
		_, err := w.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: c.ids, Tags: []types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}})
		if got := code(t, err); got != c.want {
			t.Errorf("%s: %q, want %s", name, got, c.want)
		}
	}
	var many []types.Tag
	for i := range 51 {
		many = append(many, types.Tag{Key: aws.String("k" + itoa(int32(i))), Value: aws.String("v")})
	}
	if _, err := w.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{vol}, Tags: many}); code(t, err) != "TagLimitExceeded" {
		t.Errorf("51 tags: %v", err)
	}
}

func TestDescribeInstancesAndZones(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.addInstance(t, instA, azA)
	w.addInstance(t, instC, azB)
	di, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("availability-zone"), Values: []string{azB}}}})
	if err != nil || len(di.Reservations) != 1 {
		t.Fatal(di, err)
	}
	in := di.Reservations[0].Instances[0]
	if aws.ToString(in.InstanceId) != instC || in.State.Name != types.InstanceStateNameRunning || aws.ToString(in.Placement.AvailabilityZone) != azB ||
		aws.ToString(in.RootDeviceName) != "/dev/xvda" || aws.ToString(di.Reservations[0].OwnerId) != "123456789012" {
		t.Errorf("instance %+v", in)
	}
	if _, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000000000000f"}}); code(t, err) != "InvalidInstanceID.NotFound" {
		t.Errorf("missing instance: %v", err)
	}
	if _, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{{Name: aws.String("vpc-id"), Values: []string{"x"}}}}); code(t, err) != "InvalidParameterValue" {
		t.Errorf("unsupported filter: %v", err)
	}
	az, err := w.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
	if err != nil || len(az.AvailabilityZones) != 3 || aws.ToString(az.AvailabilityZones[0].ZoneId) != "usw2-az1" ||
		az.AvailabilityZones[0].State != types.AvailabilityZoneStateAvailable {
		t.Fatalf("zones %+v %v", az, err)
	}
	one, err := w.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{ZoneNames: []string{azB}})
	if err != nil || len(one.AvailabilityZones) != 1 || aws.ToString(one.AvailabilityZones[0].ZoneName) != azB {
		t.Errorf("zone by name: %+v %v", one, err)
	}
	if _, err := w.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{ZoneNames: []string{"us-west-2z"}}); code(t, err) != "InvalidParameterValue" {
		t.Errorf("unknown zone: %v", err)
	}
}

// TestDescribeInstancesPagination: MaxResults 5-1000 (larger is capped),
// never with InstanceIds (EC2 API reference, DescribeInstances), pages
// joined by NextToken.
func TestDescribeInstancesPagination(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for i := range 7 {
		w.addInstance(t, fmt.Sprintf("i-0%016x", i+1), azA)
	}
	p := ec2.NewDescribeInstancesPaginator(w.ec2, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	pages, seen := 0, 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		seen += len(out.Reservations)
	}
	if pages != 2 || seen != 7 {
		t.Errorf("%d pages, %d instances; want 2 and 7", pages, seen)
	}
	for name, c := range map[string]struct {
		in   *ec2.DescribeInstancesInput
		want string
	}{
		"max 4":       {&ec2.DescribeInstancesInput{MaxResults: aws.Int32(4)}, "InvalidParameterValue"},
		"ids and max": {&ec2.DescribeInstancesInput{MaxResults: aws.Int32(5), InstanceIds: []string{instA}}, "InvalidParameterCombination"},
		"bogus token": {&ec2.DescribeInstancesInput{NextToken: aws.String("nope")}, "InvalidPaginationToken"},
	} {
		_, err := w.ec2.DescribeInstances(ctx, c.in)
		if got := code(t, err); got != c.want {
			t.Errorf("%s: %q, want %s", name, got, c.want)
		}
	}
	out, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5000)})
	if err != nil || len(out.Reservations) != 7 || out.NextToken != nil {
		t.Errorf("MaxResults over 1000 is capped, not refused: %v %v", out, err)
	}
}
