package ec2sim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func tagSpec(kv ...string) []types.TagSpecification {
	var tags []types.Tag
	for i := 0; i < len(kv); i += 2 {
		tags = append(tags, types.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: tags}}
}

func TestCreateDescribeDeleteWithSDKWaiters(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(5), VolumeType: types.VolumeTypeGp2,
		Encrypted: aws.Bool(true), ClientToken: aws.String("tok-1"), TagSpecifications: tagSpec("Name", "rexray-vol", "tether:cluster", "c1")}
	out, err := w.ec2.CreateVolume(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(out.VolumeId)
	if !strings.HasPrefix(id, "vol-0") || len(id) != 21 {
		t.Errorf("volume id %q is not shaped like EC2's", id)
	}
	if out.State != types.VolumeStateCreating || aws.ToInt32(out.Size) != 5 || aws.ToInt32(out.Iops) != 100 ||
		!aws.ToBool(out.Encrypted) || !strings.HasPrefix(aws.ToString(out.KmsKeyId), "arn:aws:kms:us-west-2:123456789012:key/") {
		t.Errorf("CreateVolume answered %+v", out)
	}
	// Same token, same parameters: the same volume. Different: mismatch.
	again, err := w.ec2.CreateVolume(ctx, in)
	if err != nil || aws.ToString(again.VolumeId) != id {
		t.Fatalf("idempotent create: %v %v", again, err)
	}
	in2 := *in
	in2.Size = aws.Int32(6)
	if _, err := w.ec2.CreateVolume(ctx, &in2); code(t, err) != "IdempotentParameterMismatch" {
		t.Errorf("same token, other size: %v", err)
	}

	waiter := ec2.NewVolumeAvailableWaiter(w.ec2, func(o *ec2.VolumeAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond
	})
	if err := waiter.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, 10*time.Second); err != nil {
		t.Fatalf("VolumeAvailable waiter: %v", err)
	}
	other := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azB), Size: aws.Int32(10), VolumeType: types.VolumeTypeGp3,
		TagSpecifications: tagSpec("Name", "other")})

	for _, c := range []struct {
		name   string
		values []string
		want   []string
	}{
		{"tag:Name", []string{"rexray-vol"}, []string{id}},
		{"tag:Name", []string{"rex*"}, []string{id}},
		{"tag:Name", []string{"rexray-vol", "other"}, []string{id, other}},
		{"tag-key", []string{"tether:cluster"}, []string{id}},
		{"status", []string{"available"}, []string{id, other}},
		{"availability-zone", []string{azB}, []string{other}},
		{"volume-id", []string{other}, []string{other}},
		{"volume-type", []string{"gp3"}, []string{other}},
		{"attachment.instance-id", []string{"i-0123456789abcdef0"}, nil},
	} {
		d, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String(c.name), Values: c.values}}})
		if err != nil {
			t.Fatalf("filter %s: %v", c.name, err)
		}
		var got []string
		for _, v := range d.Volumes {
			got = append(got, aws.ToString(v.VolumeId))
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("filter %s=%v: got %v, want %v", c.name, c.values, got, c.want)
		}
	}
	d, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{other}})
	if err != nil || len(d.Volumes) != 1 {
		t.Fatal(d, err)
	}
	v := d.Volumes[0]
	if v.VolumeType != types.VolumeTypeGp3 || aws.ToInt32(v.Iops) != 3000 || aws.ToInt32(v.Throughput) != 125 ||
		len(v.Tags) != 1 || len(v.Attachments) != 0 || v.CreateTime == nil || aws.ToString(v.AvailabilityZone) != azB {
		t.Errorf("described %+v", v)
	}
	if _, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{"vol-0000000000000000f"}}); code(t, err) != "InvalidVolume.NotFound" {
		t.Errorf("missing volume: %v", err)
	}
	if _, err := w.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{{Name: aws.String("fast-restored"), Values: []string{"x"}}}}); code(t, err) != "InvalidParameterValue" {
		t.Errorf("unsupported filter: %v", err)
	}

	if _, err := w.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	del := ec2.NewVolumeDeletedWaiter(w.ec2, func(o *ec2.VolumeDeletedWaiterOptions) { o.MinDelay, o.MaxDelay = time.Millisecond, 5*time.Millisecond })
	if err := del.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{id}}, 10*time.Second); err != nil {
		t.Fatalf("VolumeDeleted waiter: %v", err)
	}
	if _, err := w.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)}); code(t, err) != "InvalidVolume.NotFound" {
		t.Errorf("delete twice: %v", err)
	}

	var kinds []string
	for _, e := range w.events.list() {
		var d VolumeNotification
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if e.Source != "aws.ec2" || e.DetailType != "EBS Volume Notification" || len(e.Resources) != 1 || e.Version != "0" || e.Region != "us-west-2" {
			t.Errorf("event envelope %+v", e)
		}
		if e.Resources[0] == "arn:aws:ec2:us-west-2:123456789012:volume/"+id {
			kinds = append(kinds, d.Event+"/"+d.Result)
			if d.RequestID == "" {
				t.Errorf("event without request-id: %+v", d)
			}
		}
	}
	if strings.Join(kinds, " ") != "createVolume/available deleteVolume/deleted" {
		t.Errorf("events for %s: %v", id, kinds)
	}
}

func TestCreateVolumeValidation(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	gp := func(mut func(*ec2.CreateVolumeInput)) *ec2.CreateVolumeInput {
		in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(10), VolumeType: types.VolumeTypeGp2}
		mut(in)
		return in
	}
	for name, c := range map[string]struct {
		in   *ec2.CreateVolumeInput
		want string
	}{
		"no AZ":            {gp(func(in *ec2.CreateVolumeInput) { in.AvailabilityZone = nil }), "MissingParameter"},
		"unknown AZ":       {gp(func(in *ec2.CreateVolumeInput) { in.AvailabilityZone = aws.String("us-west-2z") }), "InvalidParameterValue"},
		"no size":          {gp(func(in *ec2.CreateVolumeInput) { in.Size = nil }), "MissingParameter"},
		"gp2 with iops":    {gp(func(in *ec2.CreateVolumeInput) { in.Iops = aws.Int32(300) }), "InvalidParameterCombination"},
		"gp2 throughput":   {gp(func(in *ec2.CreateVolumeInput) { in.Throughput = aws.Int32(300) }), "InvalidParameterCombination"},
		"gp2 too large":    {gp(func(in *ec2.CreateVolumeInput) { in.Size = aws.Int32(16385) }), "InvalidParameterValue"},
		"gp2 zero":         {gp(func(in *ec2.CreateVolumeInput) { in.Size = aws.Int32(0) }), "InvalidParameterValue"},
		"io1 without iops": {gp(func(in *ec2.CreateVolumeInput) { in.VolumeType = types.VolumeTypeIo1 }), "InvalidParameterCombination"},
		"io1 ratio":        {gp(func(in *ec2.CreateVolumeInput) { in.VolumeType, in.Iops = types.VolumeTypeIo1, aws.Int32(1000) }), "InvalidParameterValue"},
		"st1 too small":    {gp(func(in *ec2.CreateVolumeInput) { in.VolumeType = types.VolumeTypeSt1 }), "InvalidParameterValue"},
		"gp3 iops low":     {gp(func(in *ec2.CreateVolumeInput) { in.VolumeType, in.Iops = types.VolumeTypeGp3, aws.Int32(100) }), "InvalidParameterValue"},
		"gp3 thr ratio":    {gp(func(in *ec2.CreateVolumeInput) { in.VolumeType, in.Throughput = types.VolumeTypeGp3, aws.Int32(1000) }), "InvalidParameterValue"},
		"bad type":         {gp(func(in *ec2.CreateVolumeInput) { in.VolumeType = "gp9" }), "InvalidParameterValue"},
		"kms unencrypted":  {gp(func(in *ec2.CreateVolumeInput) { in.KmsKeyId = aws.String("alias/aws/ebs") }), "InvalidParameterDependency"},
		"no snapshot":      {gp(func(in *ec2.CreateVolumeInput) { in.SnapshotId = aws.String("snap-0000000000000000f") }), "InvalidSnapshot.NotFound"},
		"bad tag type": {gp(func(in *ec2.CreateVolumeInput) {
			in.TagSpecifications = []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}}}
		}), "InvalidParameterValue"},
		"aws: tag": {gp(func(in *ec2.CreateVolumeInput) { in.TagSpecifications = tagSpec("aws:x", "y") }), "InvalidParameterValue"},
		"dry run":  {gp(func(in *ec2.CreateVolumeInput) { in.DryRun = aws.Bool(true) }), "DryRunOperation"},
	} {
		_, err := w.ec2.CreateVolume(ctx, c.in)
		if got := code(t, err); got != c.want {
			t.Errorf("%s: got %q (%v), want %s", name, got, err, c.want)
		}
	}
	// Valid shapes of every type are accepted, with EBS's reported IOPS.
	for _, c := range []struct {
		typ       types.VolumeType
		size      int32
		iops      *int32
		wantIops  int32
		wantThrpt int32
	}{
		{types.VolumeTypeGp2, 1, nil, 100, 0},
		{types.VolumeTypeGp2, 1000, nil, 3000, 0},
		{types.VolumeTypeGp2, 10000, nil, 16000, 0},
		{types.VolumeTypeGp3, 10, aws.Int32(5000), 5000, 125},
		{types.VolumeTypeIo1, 10, aws.Int32(500), 500, 0},
		{types.VolumeTypeIo2, 10, aws.Int32(10000), 10000, 0},
		{types.VolumeTypeSt1, 125, nil, 0, 0},
		{types.VolumeTypeSc1, 125, nil, 0, 0},
		{types.VolumeTypeStandard, 1, nil, 0, 0},
	} {
		out, err := w.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(c.size), VolumeType: c.typ, Iops: c.iops})
		if err != nil {
			t.Errorf("%s %d GiB: %v", c.typ, c.size, err)
			continue
		}
		if aws.ToInt32(out.Iops) != c.wantIops || aws.ToInt32(out.Throughput) != c.wantThrpt {
			t.Errorf("%s %d GiB: iops %d throughput %d, want %d %d", c.typ, c.size, aws.ToInt32(out.Iops), aws.ToInt32(out.Throughput), c.wantIops, c.wantThrpt)
		}
	}
}

// rawEC2 posts a form as the query protocol carries it and returns the
// status and body, to pin the wire format.
func rawEC2(t *testing.T, base string, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.Post(base, "application/x-www-form-urlencoded; charset=utf-8", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWireFormat(t *testing.T) {
	w := newWorld(t)
	status, body := rawEC2(t, w.url, url.Values{"Action": {"RunInstances"}, "Version": {"2016-11-15"}})
	if status != 400 || !strings.Contains(body, "<Code>InvalidAction</Code>") || !strings.Contains(body, "<Response><Errors><Error>") {
		t.Errorf("unknown action: %d %s", status, body)
	}
	status, body = rawEC2(t, w.url, url.Values{"Action": {"DescribeVolumes"}, "Version": {"2016-11-15"}, "Bogus": {"1"}})
	if status != 400 || !strings.Contains(body, "<Code>UnknownParameter</Code>") {
		t.Errorf("unknown parameter: %d %s", status, body)
	}
	status, body = rawEC2(t, w.url, url.Values{"Action": {"CreateVolume"}, "Version": {"2016-11-15"},
		"AvailabilityZone": {azA}, "Size": {"1"}, "TagSpecification.1.ResourceType": {"volume"},
		"TagSpecification.1.Tag.1.Key": {"Name"}, "TagSpecification.1.Tag.1.Value": {"v"}})
	for _, want := range []string{`<CreateVolumeResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>`,
		"<volumeId>vol-0", "<size>1</size>", "<snapshotId></snapshotId>", "<status>creating</status>",
		"<attachmentSet></attachmentSet>", "<tagSet><item><key>Name</key><value>v</value></item></tagSet>",
		"<volumeType>gp2</volumeType>", "<iops>100</iops>", "<encrypted>false</encrypted>"} {
		if !strings.Contains(body, want) {
			t.Errorf("CreateVolume body lacks %s:\n%s", want, body)
		}
	}
	if status != 200 || strings.Contains(body, "<throughput>") || strings.Contains(body, "<kmsKeyId>") {
		t.Errorf("CreateVolume: %d %s", status, body)
	}
}
