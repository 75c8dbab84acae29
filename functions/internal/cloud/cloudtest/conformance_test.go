package cloudtest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/testenv"
)

// The conformance table: every request tether's seam makes (and the ways
// AWS refuses them), each with AWS's answer and where AWS documents it.
// Each row is asked of the local world (test/world, over HTTP through the
// real SDK clients) and of cloudtest (its client values), and both must
// answer as AWS does, so the unit tests' fake cannot drift from the world.
// Moto is asked too where it implements the call: where it answers
// otherwise the row records moto's answer and why, and the test checks
// that it still answers so (a moto upgrade that changes it shows up here).

// notAsked, as a row's moto answer: moto cannot be put in the state the
// row needs.
const notAsked = "not asked"

type row struct {
	req string // the request, as the table shows it
	// want is AWS's answer: "ok", "ok (what the answer holds)", or the
	// error code.
	want string
	src  string // where AWS documents (or was seen to give) that answer
	// world is the world's answer where it is not AWS's ("" when it is),
	// worldWhy how it differs (the world is not this test's to change).
	world, worldWhy string
	// moto is moto's answer where it is not AWS's ("" when it is, notAsked
	// when moto cannot be asked), motoWhy why.
	moto, motoWhy string
	call          func(ctx context.Context, tg *target) (string, error)
}

// outcome spells an answer as the table does.
func outcome(note string, err error) string {
	if err == nil {
		if note == "" {
			return "ok"
		}
		return "ok (" + note + ")"
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 300 {
		return fmt.Sprintf("HTTP %d without an AWS error", re.HTTPStatusCode())
	}
	var de *smithy.DeserializationError
	if errors.As(err, &de) {
		return "an answer the SDK cannot read"
	}
	return "not an AWS error: " + err.Error()
}

func volumesNote(out *ec2.DescribeVolumesOutput) string {
	if len(out.Volumes) == 1 {
		return "1 volume"
	}
	return fmt.Sprintf("%d volumes", len(out.Volumes))
}

func tagFilter(role string) ec2types.Filter {
	return ec2types.Filter{Name: aws.String("tag:" + roleTag), Values: []string{role}}
}

const unknownVolume, unknownInstance = "vol-0123456789abcdef0", "i-0123456789abcdef0"

func describeVolumes(in *ec2.DescribeVolumesInput) func(context.Context, *target) (string, error) {
	return func(ctx context.Context, tg *target) (string, error) {
		out, err := tg.ec2.DescribeVolumes(ctx, in)
		if err != nil {
			return "", err
		}
		return volumesNote(out), nil
	}
}

// createVolume asks for a volume in azA; token, if not empty, is prefixed
// with the target's name (each target is its own account).
func createVolume(typ ec2types.VolumeType, size int32, set func(*ec2.CreateVolumeInput)) func(context.Context, *target) (string, error) {
	return func(ctx context.Context, tg *target) (string, error) {
		in := &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(size), VolumeType: typ}
		if set != nil {
			set(in)
		}
		_, err := tg.ec2.CreateVolume(ctx, in)
		return "", err
	}
}

func attach(volume func(fixtures) string, instance func(fixtures) string, device string) func(context.Context, *target) (string, error) {
	return func(ctx context.Context, tg *target) (string, error) {
		_, err := tg.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(volume(tg.fx)), InstanceId: aws.String(instance(tg.fx)),
			Device: aws.String(device)})
		return "", err
	}
}

func fixed(id string) func(fixtures) string { return func(fixtures) string { return id } }

// tokenCreate is the idempotent create the three idempotency rows repeat.
func tokenCreate(size int32) func(context.Context, *target) (string, error) {
	return func(ctx context.Context, tg *target) (string, error) {
		out, err := tg.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(size),
			VolumeType: ec2types.VolumeTypeGp3, ClientToken: aws.String("conformance-token-1")})
		if err != nil {
			return "", err
		}
		id := aws.ToString(out.VolumeId)
		first, ok := tg.memo["token volume"]
		if !ok {
			tg.memo["token volume"] = id
			return "", nil
		}
		if id == first {
			return "the same volume", nil
		}
		return "another volume", nil
	}
}

func mountParams(volumeID string) map[string][]string {
	return map[string][]string{agentproto.ParamVolumeID: {volumeID}, agentproto.ParamVolumeName: {"conformance-data"}}
}

func sendCommand(instance func(fixtures) string, set func(*ssm.SendCommandInput)) func(context.Context, *target) (string, error) {
	return func(ctx context.Context, tg *target) (string, error) {
		in := &ssm.SendCommandInput{DocumentName: aws.String(mountDoc), InstanceIds: []string{instance(tg.fx)},
			Parameters: mountParams(tg.fx.volInUse), TimeoutSeconds: aws.Int32(60), Comment: aws.String("tether conformance")}
		if set != nil {
			set(in)
		}
		out, err := tg.ssm.SendCommand(ctx, in)
		if err != nil {
			return "", err
		}
		tg.memo["command"] = aws.ToString(out.Command.CommandId)
		return "", nil
	}
}

func listTasks(set func(fx fixtures, in *ecs.ListTasksInput)) func(context.Context, *target) (string, error) {
	return func(ctx context.Context, tg *target) (string, error) {
		in := &ecs.ListTasksInput{Cluster: aws.String(cluster), MaxResults: aws.Int32(100)}
		set(tg.fx, in)
		out, err := tg.ecs.ListTasks(ctx, in)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d tasks", len(out.TaskArns)), nil
	}
}

func failuresNote(n int, failures []ecstypes.Failure) string {
	var reasons []string
	for _, f := range failures {
		reasons = append(reasons, aws.ToString(f.Reason))
	}
	return fmt.Sprintf("%d found, failures %v", n, reasons)
}

func listCommands(set func(tg *target, in *ssm.ListCommandsInput)) func(context.Context, *target) (string, error) {
	return func(ctx context.Context, tg *target) (string, error) {
		in := &ssm.ListCommandsInput{MaxResults: aws.Int32(50)}
		set(tg, in)
		out, err := tg.ssm.ListCommands(ctx, in)
		if err != nil {
			return "", err
		}
		if len(out.Commands) == 1 {
			return "1 command", nil
		}
		return fmt.Sprintf("%d commands", len(out.Commands)), nil
	}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%032x", prefix, i+1)
	}
	return out
}

// Sources, short: the API references are AWS's (EC2: "Amazon EC2 API
// Reference"; ECS: "Amazon ECS API Reference"; SSM: "AWS Systems Manager
// API Reference"), botocore is the model the aws CLI ships (1.43.11).
var rows = []row{
	// EC2 DescribeVolumes: tether pages with tag filters and MaxResults 500.
	{req: "DescribeVolumes Filters tag:conformance=in-use, attachment.instance-id=running; MaxResults 500", want: "ok (1 volume)",
		src: "EC2 API ref DescribeVolumes (filters; MaxResults 5-500)",
		call: func(ctx context.Context, tg *target) (string, error) {
			return describeVolumes(&ec2.DescribeVolumesInput{MaxResults: aws.Int32(500), Filters: []ec2types.Filter{tagFilter("in-use"),
				{Name: aws.String("attachment.instance-id"), Values: []string{tg.fx.running}}}})(ctx, tg)
		}},
	{req: "DescribeVolumes Filters tag:conformance=to-*, MaxResults 500 (wildcard)", want: "ok (2 volumes)",
		src:  "EC2 API ref DescribeVolumes, Filter: values may use * and ?",
		call: describeVolumes(&ec2.DescribeVolumesInput{MaxResults: aws.Int32(500), Filters: []ec2types.Filter{tagFilter("to-*")}})},
	{req: "DescribeVolumes VolumeIds [available]", want: "ok (1 volume)", src: "EC2 API ref DescribeVolumes",
		call: func(ctx context.Context, tg *target) (string, error) {
			return describeVolumes(&ec2.DescribeVolumesInput{VolumeIds: []string{tg.fx.volAvail}})(ctx, tg)
		}},
	{req: "DescribeVolumes VolumeIds [available] with MaxResults 500", want: "InvalidParameterCombination", moto: "ok (1 volume)", motoWhy: "moto does not check that MaxResults excludes VolumeIds",
		src: "EC2 API ref DescribeVolumes: MaxResults cannot be used with VolumeIds",
		call: func(ctx context.Context, tg *target) (string, error) {
			return describeVolumes(&ec2.DescribeVolumesInput{VolumeIds: []string{tg.fx.volAvail}, MaxResults: aws.Int32(500)})(ctx, tg)
		}},
	{req: "DescribeVolumes Filters tag:conformance=in-use, MaxResults 4", want: "InvalidParameterValue", moto: "ok (1 volume)", motoWhy: "moto does not check MaxResults' range",
		src:  "EC2 API ref DescribeVolumes: MaxResults between 5 and 500",
		call: describeVolumes(&ec2.DescribeVolumesInput{MaxResults: aws.Int32(4), Filters: []ec2types.Filter{tagFilter("in-use")}})},
	{req: "DescribeVolumes Filters tag:conformance=in-use, MaxResults 501", want: "ok (1 volume)",
		src:  "EC2 API ref DescribeVolumes: a MaxResults over 500 returns 500 items",
		call: describeVolumes(&ec2.DescribeVolumesInput{MaxResults: aws.Int32(501), Filters: []ec2types.Filter{tagFilter("in-use")}})},
	{req: "DescribeVolumes VolumeIds [unknown]", want: "InvalidVolume.NotFound", src: "EC2 API ref, error codes",
		call: describeVolumes(&ec2.DescribeVolumesInput{VolumeIds: []string{unknownVolume}})},
	{req: "DescribeVolumes Filters no-such-filter=x", want: "InvalidParameterValue", moto: "HTTP 500 without an AWS error", motoWhy: "moto fails on a filter it does not know (FilterNotImplementedError)", src: "EC2 API ref, error codes (an unknown filter)",
		call: describeVolumes(&ec2.DescribeVolumesInput{Filters: []ec2types.Filter{{Name: aws.String("no-such-filter"), Values: []string{"x"}}}})},

	// EC2 CreateVolume: idempotency and the per-type rules.
	{req: "CreateVolume gp3 1 GiB ClientToken T", want: "ok", src: "EC2 API ref CreateVolume; \"Ensuring idempotency\"",
		call: tokenCreate(1)},
	{req: "CreateVolume gp3 1 GiB ClientToken T, again", want: "ok (the same volume)", moto: "ok (another volume)", motoWhy: "moto ignores ClientToken: every create makes a volume", src: "EC2 API ref, \"Ensuring idempotency\"",
		call: tokenCreate(1)},
	{req: "CreateVolume gp3 2 GiB ClientToken T (other parameters)", want: "IdempotentParameterMismatch", moto: "ok (another volume)", motoWhy: "moto ignores ClientToken",
		src: "EC2 API ref, \"Ensuring idempotency\"; error codes", call: tokenCreate(2)},
	{req: "CreateVolume gp2 16385 GiB", want: "InvalidParameterValue", moto: "ok", motoWhy: "moto checks no size limits", src: "EC2 API ref CreateVolume, Size: gp2 1-16,384",
		call: createVolume(ec2types.VolumeTypeGp2, 16385, nil)},
	{req: "CreateVolume gp3 65537 GiB", want: "InvalidParameterValue", moto: "ok", motoWhy: "moto checks no size limits", src: "EC2 API ref CreateVolume, Size: gp3 1-65,536",
		call: createVolume(ec2types.VolumeTypeGp3, 65537, nil)},
	{req: "CreateVolume io1 100 GiB without Iops", want: "InvalidParameterCombination", moto: "InvalidParameterDependency", motoWhy: "moto answers every parameter dependency with InvalidParameterDependency",
		src:  "EC2 API ref CreateVolume, Iops: required for io1 and io2; real answer: aws-ebs-csi-driver#766",
		call: createVolume(ec2types.VolumeTypeIo1, 100, nil)},
	{req: "CreateVolume gp2 100 GiB Iops 3000", want: "InvalidParameterCombination", moto: "InvalidParameterDependency", motoWhy: "moto answers every parameter dependency with InvalidParameterDependency",
		src:  "EC2 API ref CreateVolume, Iops: not supported for gp2, st1, sc1, standard; real answer: libopenstorage/openstorage#121",
		call: createVolume(ec2types.VolumeTypeGp2, 100, func(in *ec2.CreateVolumeInput) { in.Iops = aws.Int32(3000) })},
	{req: "CreateVolume io1 4 GiB Iops 1000 (250 IOPS/GiB)", want: "InvalidParameterValue", moto: "ok", motoWhy: "moto checks no IOPS ratio",
		src:  "EBS user guide, Provisioned IOPS SSD: io1 at most 50 IOPS per GiB",
		call: createVolume(ec2types.VolumeTypeIo1, 4, func(in *ec2.CreateVolumeInput) { in.Iops = aws.Int32(1000) })},
	{req: "CreateVolume gp3 100 GiB Iops 3000 Throughput 1000 (0.33 MiB/s per IOPS)", want: "InvalidParameterValue", moto: "ok", motoWhy: "moto checks no throughput ratio",
		src:  "EBS user guide, General Purpose SSD: gp3 at most 0.25 MiB/s per IOPS",
		call: createVolume(ec2types.VolumeTypeGp3, 100, func(in *ec2.CreateVolumeInput) { in.Iops, in.Throughput = aws.Int32(3000), aws.Int32(1000) })},
	{req: "CreateVolume gp2 100 GiB Throughput 125", want: "InvalidParameterCombination", moto: "InvalidParameterDependency", motoWhy: "moto answers every parameter dependency with InvalidParameterDependency",
		src:  "EC2 API ref CreateVolume, Throughput: gp3 only; real answer (io1): runs-on/runs-on#426",
		call: createVolume(ec2types.VolumeTypeGp2, 100, func(in *ec2.CreateVolumeInput) { in.Throughput = aws.Int32(125) })},
	{req: "CreateVolume gp3 100 GiB MultiAttachEnabled", want: "InvalidParameterCombination", moto: "InvalidParameterDependency", motoWhy: "moto answers every parameter dependency with InvalidParameterDependency",
		src:  "EC2 API ref CreateVolume, MultiAttachEnabled: io1 and io2 only",
		call: createVolume(ec2types.VolumeTypeGp3, 100, func(in *ec2.CreateVolumeInput) { in.MultiAttachEnabled = aws.Bool(true) })},
	{req: "CreateVolume io2 4 GiB Iops 100 MultiAttachEnabled", want: "ok",
		src:  "EC2 API ref CreateVolume, MultiAttachEnabled",
		call: createVolume(ec2types.VolumeTypeIo2, 4, func(in *ec2.CreateVolumeInput) { in.Iops, in.MultiAttachEnabled = aws.Int32(100), aws.Bool(true) })},
	{req: "CreateVolume gp3 1 GiB KmsKeyId without Encrypted", want: "InvalidParameterDependency",
		src:  "EC2 API ref CreateVolume, KmsKeyId: \"If KmsKeyId is specified, the encrypted state must be true\"",
		call: createVolume(ec2types.VolumeTypeGp3, 1, func(in *ec2.CreateVolumeInput) { in.KmsKeyId = aws.String("alias/aws/ebs") })},
	{req: "CreateVolume gp3 1 GiB tagged aws:owner=x", want: "InvalidParameterValue", moto: "ok", motoWhy: "moto takes tag keys with the reserved aws: prefix",
		src: "EC2 user guide, tag restrictions: the aws: prefix is reserved",
		call: createVolume(ec2types.VolumeTypeGp3, 1, func(in *ec2.CreateVolumeInput) {
			in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeVolume, Tags: []ec2types.Tag{{Key: aws.String("aws:owner"), Value: aws.String("x")}}}}
		})},

	// EC2 AttachVolume.
	{req: "AttachVolume to-attach to running as /dev/xvdg", want: "ok", src: "EC2 API ref AttachVolume",
		call: attach(func(fx fixtures) string { return fx.volAttach }, func(fx fixtures) string { return fx.running }, "/dev/xvdg")},
	{req: "AttachVolume available to running as /dev/xvddy (past /dev/xvddx)", want: "InvalidParameterValue", moto: "ok", motoWhy: "moto takes any device name",
		src:  "EC2 user guide, device names on Linux instances; aws-ebs-csi-driver pkg/cloud/devicemanager",
		call: attach(func(fx fixtures) string { return fx.volAvail }, func(fx fixtures) string { return fx.running }, "/dev/xvddy")},
	{req: "AttachVolume available to running as /dev/xvdf (in use there)", want: "InvalidParameterValue", moto: "ok", motoWhy: "moto does not check device names in use",
		src:  "EC2 API ref, error codes (\"Attachment point ... is already in use\")",
		call: attach(func(fx fixtures) string { return fx.volAvail }, func(fx fixtures) string { return fx.running }, "/dev/xvdf")},
	{req: "AttachVolume in-use to running as /dev/xvdh", want: "VolumeInUse", moto: "ok", motoWhy: "moto attaches a volume that is in use again", src: "EC2 API ref, error codes",
		call: attach(func(fx fixtures) string { return fx.volInUse }, func(fx fixtures) string { return fx.running }, "/dev/xvdh")},
	{req: "AttachVolume available (azA) to runningB (azB)", want: "InvalidVolume.ZoneMismatch", moto: "ok", motoWhy: "moto does not compare availability zones",
		src:  "EC2 API ref AttachVolume (same AZ); error codes",
		call: attach(func(fx fixtures) string { return fx.volAvail }, func(fx fixtures) string { return fx.runningB }, "/dev/xvdh")},
	{req: "AttachVolume for-stopped to stopped as /dev/xvdh", want: "ok",
		src:  "EC2 API ref AttachVolume: \"to a running or stopped instance\"",
		call: attach(func(fx fixtures) string { return fx.volForStopped }, func(fx fixtures) string { return fx.stopped }, "/dev/xvdh")},
	{req: "AttachVolume available to stopping", want: "IncorrectInstanceState",
		src: "EC2 API ref AttachVolume (running or stopped only); error codes", moto: notAsked, motoWhy: "moto has no stopping state",
		call: attach(func(fx fixtures) string { return fx.volAvail }, func(fx fixtures) string { return fx.stopping }, "/dev/xvdh")},
	{req: "AttachVolume available to terminated", want: "IncorrectInstanceState", moto: "ok", motoWhy: "moto attaches to a terminated instance",
		src:  "EC2 API ref AttachVolume (running or stopped only); error codes",
		call: attach(func(fx fixtures) string { return fx.volAvail }, func(fx fixtures) string { return fx.terminated }, "/dev/xvdh")},
	{req: "AttachVolume unknown volume to running", want: "InvalidVolume.NotFound", src: "EC2 API ref, error codes",
		call: attach(fixed(unknownVolume), func(fx fixtures) string { return fx.running }, "/dev/xvdh")},
	{req: "AttachVolume available to unknown instance", want: "InvalidInstanceID.NotFound", src: "EC2 API ref, error codes",
		call: attach(func(fx fixtures) string { return fx.volAvail }, fixed(unknownInstance), "/dev/xvdh")},

	// EC2 DetachVolume (tether always names the instance), DeleteVolume, CreateTags, DescribeInstances.
	{req: "DetachVolume available from running", want: "IncorrectState", moto: "ok", motoWhy: "moto took every attach above (one attachment per volume, the last wins) and detaches when the named instance has a device of that name",
		src: "real answers: aws-ebs-csi-driver#1801, hashicorp/terraform#9023 (\"Volume 'vol-…' is in the 'available' state.\", InstanceId given)",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(tg.fx.volAvail), InstanceId: aws.String(tg.fx.running)})
			return "", err
		}},
	{req: "DetachVolume available (no instance named)", want: "IncorrectState", moto: "HTTP 500 without an AWS error", motoWhy: "moto fails without InstanceId", src: "real answer: aws-ebs-csi-driver#375",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(tg.fx.volAvail)})
			return "", err
		}},
	{req: "DetachVolume in-use from runningB (attached elsewhere)", want: "InvalidAttachment.NotFound", moto: "ok", motoWhy: "moto detaches when the named instance has a device of that name (an attach above gave runningB /dev/xvdh)", src: "EC2 API ref, error codes",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(tg.fx.volInUse), InstanceId: aws.String(tg.fx.runningB)})
			return "", err
		}},
	{req: "DetachVolume on-stopping from stopping (Force)", want: "IncorrectInstanceState",
		src:  "real answer: hashicorp/terraform#18965 (\"The instance is not in a state in which volumes can be detached.\")",
		moto: notAsked, motoWhy: "moto has no stopping state",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(tg.fx.volOnStopping), InstanceId: aws.String(tg.fx.stopping),
				Force: aws.Bool(true)})
			return "", err
		}},
	{req: "DeleteVolume in-use", want: "VolumeInUse", moto: "ok", motoWhy: "moto deletes a volume that is attached", src: "EC2 API ref DeleteVolume (\"must be in the available state\"); error codes",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(tg.fx.volInUse)})
			return "", err
		}},
	{req: "DeleteVolume to-delete", want: "ok", src: "EC2 API ref DeleteVolume",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(tg.fx.volDelete)})
			return "", err
		}},
	{req: "DeleteVolume unknown", want: "InvalidVolume.NotFound", src: "EC2 API ref, error codes",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(unknownVolume)})
			return "", err
		}},
	{req: "CreateTags available tether:cluster=c", want: "ok", src: "EC2 API ref CreateTags",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{tg.fx.volAvail},
				Tags: []ec2types.Tag{{Key: aws.String("tether:cluster"), Value: aws.String("c")}}})
			return "", err
		}},
	{req: "CreateTags [available, unknown] (all or nothing)", want: "InvalidVolume.NotFound", src: "EC2 API ref, error codes",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{tg.fx.volAvail, unknownVolume},
				Tags: []ec2types.Tag{{Key: aws.String("half"), Value: aws.String("done")}}})
			if err == nil {
				return "", nil
			}
			out, derr := tg.ec2.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{tg.fx.volAvail}})
			if derr == nil && len(out.Volumes) == 1 {
				for _, t := range out.Volumes[0].Tags {
					if aws.ToString(t.Key) == "half" {
						return "", errors.New("refused, yet the first volume was tagged")
					}
				}
			}
			return "", err
		}},
	{req: "CreateTags available aws:owner=x", want: "InvalidParameterValue", moto: "ok", motoWhy: "moto takes tag keys with the reserved aws: prefix", src: "EC2 user guide, tag restrictions: the aws: prefix is reserved",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{tg.fx.volAvail},
				Tags: []ec2types.Tag{{Key: aws.String("aws:owner"), Value: aws.String("x")}}})
			return "", err
		}},
	{req: "DescribeInstances [running]", want: "ok (running, /dev/xvdf and /dev/xvdg mapped)", src: "EC2 API ref DescribeInstances",
		call: func(ctx context.Context, tg *target) (string, error) {
			out, err := tg.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{tg.fx.running}})
			if err != nil {
				return "", err
			}
			if len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
				return fmt.Sprintf("%d reservations", len(out.Reservations)), nil
			}
			in := out.Reservations[0].Instances[0]
			mapped := map[string]bool{}
			for _, m := range in.BlockDeviceMappings {
				mapped[aws.ToString(m.DeviceName)] = true
			}
			note := string(in.State.Name)
			if mapped["/dev/xvdf"] && mapped["/dev/xvdg"] {
				note += ", /dev/xvdf and /dev/xvdg mapped"
			}
			return note, nil
		}},
	{req: "DescribeInstances [unknown]", want: "InvalidInstanceID.NotFound", src: "EC2 API ref, error codes",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{unknownInstance}})
			return "", err
		}},
	{req: "DetachVolume in-use from running", want: "ok", moto: "InvalidVolume.NotFound", motoWhy: "moto deleted this attached volume at DeleteVolume in-use", src: "EC2 API ref DetachVolume",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(tg.fx.volInUse), InstanceId: aws.String(tg.fx.running)})
			return "", err
		}},

	// ECS.
	{req: "ListTasks containerInstance, desiredStatus RUNNING, maxResults 100", want: "ok (2 tasks)", src: "ECS API ref ListTasks",
		call: listTasks(func(fx fixtures, in *ecs.ListTasksInput) {
			in.ContainerInstance, in.DesiredStatus = aws.String(fx.containerInstance), ecstypes.DesiredStatusRunning
		})},
	{req: "ListTasks family, desiredStatus RUNNING, maxResults 100", want: "ok (2 tasks)", src: "ECS API ref ListTasks",
		call: listTasks(func(fx fixtures, in *ecs.ListTasksInput) {
			in.Family, in.DesiredStatus = aws.String(family), ecstypes.DesiredStatusRunning
		})},
	{req: "ListTasks maxResults 101", want: "InvalidParameterException", moto: "ok (2 tasks)", motoWhy: "moto does not check maxResults", src: "ECS API ref ListTasks, maxResults: 1 to 100",
		call: listTasks(func(_ fixtures, in *ecs.ListTasksInput) { in.MaxResults = aws.Int32(101) })},
	{req: "ListTasks startedBy with family", want: "InvalidParameterException", moto: "ok (0 tasks)", motoWhy: "moto takes startedBy with other filters",
		src: "ECS API ref ListTasks, startedBy: \"it must be the only filter that you use\"",
		call: listTasks(func(_ fixtures, in *ecs.ListTasksInput) {
			in.StartedBy, in.Family = aws.String("tether"), aws.String(family)
		})},
	{req: "ListTasks startedBy with containerInstance", want: "InvalidParameterException", moto: "ok (0 tasks)", motoWhy: "moto takes startedBy with other filters",
		src: "ECS API ref ListTasks, startedBy: \"it must be the only filter that you use\"",
		call: listTasks(func(fx fixtures, in *ecs.ListTasksInput) {
			in.StartedBy, in.ContainerInstance = aws.String("tether"), aws.String(fx.containerInstance)
		})},
	{req: "ListTasks startedBy with desiredStatus RUNNING", want: "InvalidParameterException", moto: "ok (0 tasks)", motoWhy: "moto takes startedBy with other filters",
		src: "ECS API ref ListTasks, startedBy: the only filter (desiredStatus filters too: the stricter reading)",
		call: listTasks(func(_ fixtures, in *ecs.ListTasksInput) {
			in.StartedBy, in.DesiredStatus = aws.String("tether"), ecstypes.DesiredStatusRunning
		})},
	{req: "ListTasks unknown containerInstance", want: "InvalidParameterException", moto: "ok (0 tasks)", motoWhy: "moto does not look the container instance up", src: "ECS API ref ListTasks, errors",
		call: listTasks(func(_ fixtures, in *ecs.ListTasksInput) {
			in.ContainerInstance = aws.String(fmt.Sprintf("arn:aws:ecs:%s:%s:container-instance/%s/%032x", region, account, cluster, 0xdead))
		})},
	{req: "ListTasks unknown serviceName", want: "ServiceNotFoundException", moto: "ok (2 tasks)", motoWhy: "moto ignores an unknown serviceName", src: "ECS API ref ListTasks, errors",
		call: listTasks(func(_ fixtures, in *ecs.ListTasksInput) { in.ServiceName = aws.String("no-such-service") })},
	{req: "ListTasks desiredStatus DONE", want: "ClientException", moto: "ok (0 tasks)", motoWhy: "moto does not check enums", src: "botocore ecs model: DesiredStatus enum (a validation error is ClientException)",
		call: listTasks(func(_ fixtures, in *ecs.ListTasksInput) { in.DesiredStatus = ecstypes.DesiredStatus("DONE") })},
	{req: "DescribeTasks [task, unknown]", want: "ok (1 found, failures [MISSING])", moto: "an answer the SDK cannot read", motoWhy: "moto writes a task's containers[].cpu as a number, ECS's model a string", src: "ECS API ref DescribeTasks, Failure",
		call: func(ctx context.Context, tg *target) (string, error) {
			out, err := tg.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(cluster), Tasks: []string{tg.fx.task, fmt.Sprintf("%032x", 0xdead)}})
			if err != nil {
				return "", err
			}
			return failuresNote(len(out.Tasks), out.Failures), nil
		}},
	{req: "DescribeTasks 101 tasks", want: "InvalidParameterException", moto: "ok", motoWhy: "moto does not count tasks", src: "ECS API ref DescribeTasks, tasks: up to 100",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ecs.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(cluster), Tasks: ids("", 101)})
			return "", err
		}},
	{req: "DescribeTaskDefinition family:1", want: "ok", src: "ECS API ref DescribeTaskDefinition",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(tg.fx.taskDef)})
			return "", err
		}},
	{req: "DescribeTaskDefinition unknown", want: "ClientException", src: "ECS API ref DescribeTaskDefinition, errors",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{
				TaskDefinition: aws.String(fmt.Sprintf("arn:aws:ecs:%s:%s:task-definition/no-such-family:1", region, account))})
			return "", err
		}},
	{req: "StopTask taskToStop with a 256-character reason", want: "InvalidParameterException", moto: "an answer the SDK cannot read", motoWhy: "moto takes the long reason and answers with a task the SDK cannot read (containers[].cpu a number)",
		src: "ECS API ref StopTask, reason: \"Up to 255 characters are allowed\"",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ecs.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(cluster), Task: aws.String(tg.fx.taskToStop),
				Reason: aws.String(strings.Repeat("r", 256))})
			return "", err
		}},
	{req: "StopTask taskToStop with a 255-character reason", want: "ok", moto: "an answer the SDK cannot read", motoWhy: "moto writes a task's containers[].cpu as a number, ECS's model a string", src: "ECS API ref StopTask",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ecs.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(cluster), Task: aws.String(tg.fx.taskToStop),
				Reason: aws.String(strings.Repeat("r", 255))})
			return "", err
		}},
	{req: "StopTask unknown task", want: "InvalidParameterException", moto: "HTTP 500 without an AWS error", motoWhy: "moto fails on a task it does not know", src: "ECS API ref StopTask, errors",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ecs.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(cluster), Task: aws.String(fmt.Sprintf("%032x", 0xdead))})
			return "", err
		}},
	{req: "DescribeServices [service, unknown]", want: "ok (1 found, failures [MISSING])", src: "ECS API ref DescribeServices, Failure",
		call: func(ctx context.Context, tg *target) (string, error) {
			out, err := tg.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(cluster), Services: []string{service, "no-such-service"}})
			if err != nil {
				return "", err
			}
			return failuresNote(len(out.Services), out.Failures), nil
		}},
	{req: "DescribeServices 11 services", want: "InvalidParameterException", moto: "ok", motoWhy: "moto does not count services", src: "ECS API ref DescribeServices, services: up to 10",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(cluster), Services: ids("svc-", 11)})
			return "", err
		}},
	{req: "DescribeContainerInstances [running's, unknown]", want: "ok (1 found, failures [MISSING])",
		src: "ECS API ref DescribeContainerInstances, Failure",
		call: func(ctx context.Context, tg *target) (string, error) {
			out, err := tg.ecs.DescribeContainerInstances(ctx, &ecs.DescribeContainerInstancesInput{Cluster: aws.String(cluster),
				ContainerInstances: []string{tg.fx.containerInstance, fmt.Sprintf("%032x", 0xdead)}})
			if err != nil {
				return "", err
			}
			return failuresNote(len(out.ContainerInstances), out.Failures), nil
		}},
	{req: "DescribeContainerInstances 101 container instances", want: "InvalidParameterException", moto: "ok", motoWhy: "moto does not count container instances",
		src: "ECS API ref DescribeContainerInstances, containerInstances: up to 100",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ecs.DescribeContainerInstances(ctx, &ecs.DescribeContainerInstancesInput{Cluster: aws.String(cluster), ContainerInstances: ids("", 101)})
			return "", err
		}},
	{req: "ListContainerInstances maxResults 101", want: "InvalidParameterException", moto: "ok", motoWhy: "moto does not check maxResults",
		src: "ECS API ref ListContainerInstances, maxResults: 1 to 100",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ecs.ListContainerInstances(ctx, &ecs.ListContainerInstancesInput{Cluster: aws.String(cluster), MaxResults: aws.Int32(101)})
			return "", err
		}},

	// SSM.
	{req: "SendCommand mount to running, Comment of 100 characters", want: "ok", src: "SSM API ref SendCommand; botocore ssm model (Comment max 100)",
		call: sendCommand(func(fx fixtures) string { return fx.running }, func(in *ssm.SendCommandInput) { in.Comment = aws.String(strings.Repeat("c", 100)) })},
	{req: "GetCommandInvocation of that command, right after", want: "InvocationDoesNotExist", moto: "ok", motoWhy: "moto has no eventual consistency: the invocation is there at once",
		src: "SSM API ref GetCommandInvocation (\"eventual consistency\"); aws/aws-sdk#86",
		call: func(ctx context.Context, tg *target) (string, error) {
			if _, err := sendCommand(func(fx fixtures) string { return fx.running }, nil)(ctx, tg); err != nil {
				return "", fmt.Errorf("SendCommand: %w", err)
			}
			_, err := tg.ssm.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: aws.String(tg.memo["command"]),
				InstanceId: aws.String(tg.fx.running)})
			return "", err
		}},
	{req: "SendCommand mount to running, Comment of 101 characters", want: "ValidationException", moto: "ok", motoWhy: "moto does not check Comment's length", src: "botocore ssm model: Comment max 100",
		call: sendCommand(func(fx fixtures) string { return fx.running }, func(in *ssm.SendCommandInput) { in.Comment = aws.String(strings.Repeat("c", 101)) })},
	{req: "SendCommand mount to running, TimeoutSeconds 29", want: "ValidationException", moto: "ok", motoWhy: "moto does not check TimeoutSeconds' range", src: "botocore ssm model: TimeoutSeconds 30-2592000",
		call: sendCommand(func(fx fixtures) string { return fx.running }, func(in *ssm.SendCommandInput) { in.TimeoutSeconds = aws.Int32(29) })},
	{req: "SendCommand mount to an unknown instance", want: "InvalidInstanceId", moto: "ok", motoWhy: "moto sends to any instance id",
		src:  "SSM API ref SendCommand, InvalidInstanceId (\"not registered\")",
		call: sendCommand(fixed(unknownInstance), nil)},
	{req: "SendCommand mount to an instance whose SSM agent is down (ConnectionLost)", want: "InvalidInstanceId",
		src:  "SSM API ref SendCommand, InvalidInstanceId (\"SSM Agent isn't running\")",
		moto: notAsked, motoWhy: "moto has no SSM agent to stop",
		call: sendCommand(func(fx fixtures) string { return fx.ssmDown }, nil)},
	{req: "SendCommand an unknown document", want: "InvalidDocument", moto: "ok", motoWhy: "moto sends any document name", src: "SSM API ref SendCommand, errors",
		call: sendCommand(func(fx fixtures) string { return fx.running }, func(in *ssm.SendCommandInput) { in.DocumentName = aws.String("no-such-document") })},
	{req: "SendCommand mount with a parameter it does not declare", want: "InvalidParameters", moto: "ok", motoWhy: "moto does not check parameters against the document", src: "SSM API ref SendCommand, InvalidParameters",
		call: sendCommand(func(fx fixtures) string { return fx.running }, func(in *ssm.SendCommandInput) { in.Parameters["NoSuchParameter"] = []string{"x"} })},
	{req: "SendCommand mount with VolumeId outside its allowedPattern", want: "InvalidParameters", moto: "ok", motoWhy: "moto does not check allowedPattern",
		src: "SSM API ref SendCommand, InvalidParameters; SSM document syntax, allowedPattern",
		call: sendCommand(func(fx fixtures) string { return fx.running }, func(in *ssm.SendCommandInput) {
			in.Parameters[agentproto.ParamVolumeID] = []string{"volume-1"}
		})},
	{req: "SendCommand mount without the required VolumeName", want: "InvalidParameters", moto: "ok", motoWhy: "moto does not check required parameters",
		src: "SSM API ref SendCommand, InvalidParameters (\"required parameters ... not specified\")",
		call: sendCommand(func(fx fixtures) string { return fx.running }, func(in *ssm.SendCommandInput) {
			delete(in.Parameters, agentproto.ParamVolumeName)
		})},
	{req: "GetCommandInvocation of an unknown command", want: "InvocationDoesNotExist", moto: "InvalidCommandId", motoWhy: "moto answers InvalidCommandId; the API reference's InvocationDoesNotExist is the one for ids that match no invocation", src: "SSM API ref GetCommandInvocation, errors",
		call: func(ctx context.Context, tg *target) (string, error) {
			_, err := tg.ssm.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: aws.String("00000000-0000-4000-8000-00000000dead"),
				InstanceId: aws.String(tg.fx.running)})
			return "", err
		}},
	{req: "ListCommands InstanceId, DocumentName and InvokedAfter filters, MaxResults 50", want: "ok (2 commands)", moto: "ok (9 commands)", motoWhy: "moto sent every command above and ignores the filters",
		src: "SSM API ref ListCommands, CommandFilter",
		call: listCommands(func(tg *target, in *ssm.ListCommandsInput) {
			in.InstanceId = aws.String(tg.fx.running)
			in.Filters = []ssmtypes.CommandFilter{{Key: ssmtypes.CommandFilterKeyDocumentName, Value: aws.String(mountDoc)},
				{Key: ssmtypes.CommandFilterKeyInvokedAfter, Value: aws.String(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339))}}
		})},
	{req: "ListCommands InvokedBefore 2020-01-01", want: "ok (0 commands)", moto: "ok (9 commands)", motoWhy: "moto ignores the filters", src: "SSM API ref ListCommands, CommandFilter",
		call: listCommands(func(_ *target, in *ssm.ListCommandsInput) {
			in.Filters = []ssmtypes.CommandFilter{{Key: ssmtypes.CommandFilterKeyInvokedBefore, Value: aws.String("2020-01-01T00:00:00Z")}}
		})},
	{req: "ListCommands CommandId of the last command", want: "ok (1 command)", src: "SSM API ref ListCommands",
		call: listCommands(func(tg *target, in *ssm.ListCommandsInput) { in.CommandId = aws.String(tg.memo["command"]) })},
	{req: "ListCommands an unknown CommandId", want: "InvalidCommandId", src: "SSM API ref ListCommands, InvalidCommandId",
		call: listCommands(func(_ *target, in *ssm.ListCommandsInput) {
			in.CommandId = aws.String("00000000-0000-4000-8000-00000000dead")
		})},
	{req: "ListCommands MaxResults 51", want: "ValidationException", moto: "ok (9 commands)", motoWhy: "moto does not check MaxResults' range", src: "botocore ssm model: MaxResults 1-50",
		call: listCommands(func(_ *target, in *ssm.ListCommandsInput) { in.MaxResults = aws.Int32(51) })},
	{req: "ListCommands filter key Owner (not in the enum)", want: "ValidationException", moto: "ok (9 commands)", motoWhy: "moto does not check enums", src: "botocore ssm model: CommandFilterKey enum",
		call: listCommands(func(_ *target, in *ssm.ListCommandsInput) {
			in.Filters = []ssmtypes.CommandFilter{{Key: ssmtypes.CommandFilterKey("Owner"), Value: aws.String("x")}}
		})},
}

// ask runs every row against one target, in order (rows build on what
// earlier rows did: the idempotency rows, the last command).
func ask(ctx context.Context, tg *target, skip func(row) bool) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		if skip != nil && skip(r) {
			out[i] = notAsked
			continue
		}
		note, err := r.call(ctx, tg)
		out[i] = outcome(note, err)
	}
	return out
}

func TestConformance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	world := ask(ctx, worldTarget(t, ctx), nil)
	fake := ask(ctx, fakeTarget(t, ctx), nil)
	var moto []string
	motoURL, motoErr := startMoto(t, ctx)
	if motoErr == nil {
		moto = ask(ctx, motoTarget(t, ctx, motoURL), func(r row) bool { return r.moto == notAsked })
	}

	for i, r := range rows {
		wantWorld := r.want
		if r.world != "" {
			wantWorld = r.world
		}
		if world[i] != wantWorld {
			t.Errorf("%s: the world answers %s, want %s", r.req, world[i], wantWorld)
		}
		if fake[i] != r.want {
			t.Errorf("%s: cloudtest answers %s, AWS %s", r.req, fake[i], r.want)
		}
		if moto == nil {
			continue
		}
		wantMoto := r.want
		if r.moto != "" {
			wantMoto = r.moto
		}
		if moto[i] != wantMoto {
			t.Errorf("%s: moto answers %s, the table says %s", r.req, moto[i], wantMoto)
		}
		if r.moto != "" && r.motoWhy == "" || r.world != "" && r.worldWhy == "" {
			t.Errorf("%s: a disagreement with AWS without a why", r.req)
		}
	}
	t.Log("\n" + table(world, fake, moto))
	if motoErr != nil {
		t.Run("moto", func(t *testing.T) { testenv.Missing(t, motoErr.Error()) })
	}
}

// table prints the rows with each target's answer; a disagreement with
// AWS is marked with "≠" and explained in the last column.
func table(world, fake, moto []string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\trequest\tAWS\tworld\tcloudtest\tmoto\tsource / known disagreement")
	mark := func(got, want string) string {
		if got == want || got == notAsked {
			return got
		}
		return "≠ " + got
	}
	for i, r := range rows {
		m := "(moto missing)"
		if moto != nil {
			m = mark(moto[i], r.want)
		}
		note := r.src
		for _, why := range []string{r.worldWhy, r.motoWhy} {
			if why != "" {
				note += "; " + why
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, r.req, r.want, mark(world[i], r.want), mark(fake[i], r.want), m, note)
	}
	_ = tw.Flush()
	return b.String()
}
