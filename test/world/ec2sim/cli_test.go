package ec2sim

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/tether-ecs/tether/test/testenv"
)

// runCLI runs a command line through bash, as the seed's reader would
// type it, with the real aws CLI pointed at the world.
func runCLI(t *testing.T, w *world, line string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command("bash", "-c", line)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "AZ=" + azA,
		"AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret", "AWS_DEFAULT_REGION=us-west-2",
		"AWS_ENDPOINT_URL=" + w.url, "AWS_CONFIG_FILE=" + filepath.Join(home, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "credentials"), "AWS_EC2_METADATA_DISABLED=true"}
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out) + string(ee.Stderr), err
	}
	return string(out), err
}

// TestSeedCommandsWithAWSCLI runs the seed walkthrough's EC2 commands
// verbatim (create the volume by hand, find it by tag, delete it).
func TestSeedCommandsWithAWSCLI(t *testing.T) {
	testenv.RequireCommands(t, "aws", "bash")
	w := newWorld(t)

	out, err := runCLI(t, w, `aws ec2 create-volume --size 1 --volume-type gp2 \
--availability-zone $AZ \
--tag-specifications 'ResourceType=volume,Tags=[{Key=Name,Value=rexray-vol}]'`)
	if err != nil {
		t.Fatalf("create-volume: %v\n%s", err, out)
	}
	var created struct {
		VolumeID         string `json:"VolumeId"`
		Size             int
		State            string
		VolumeType       string
		AvailabilityZone string
		Tags             []struct{ Key, Value string }
		Attachments      []any
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("create-volume output is not JSON: %v\n%s", err, out)
	}
	if !strings.HasPrefix(created.VolumeID, "vol-") || created.Size != 1 || created.State != "creating" || created.VolumeType != "gp2" ||
		created.AvailabilityZone != azA || len(created.Tags) != 1 || created.Tags[0].Value != "rexray-vol" || created.Attachments == nil {
		t.Errorf("create-volume printed %+v", created)
	}
	w.waitState(t, created.VolumeID, "available", "")

	out, err = runCLI(t, w, `aws ec2 describe-volumes --filter Name="tag:Name",Values=rexray-vol \
--query "Volumes[].VolumeId" --output text`)
	if err != nil || strings.TrimSpace(out) != created.VolumeID {
		t.Fatalf("describe-volumes: %v\n%q, want %s", err, out, created.VolumeID)
	}

	out, err = runCLI(t, w, `rexrayVolumeID=$(aws ec2 describe-volumes --filter Name="tag:Name",Values=rexray-vol \
--query "Volumes[].VolumeId" --output text)
aws ec2 delete-volume --volume-id $rexrayVolumeID`)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("delete-volume: %v\n%s", err, out)
	}
	eventually(t, created.VolumeID+" deleted", func() (bool, string) {
		_, _, err := w.srv.VolumeState(created.VolumeID)
		return err != nil, "still there"
	})

	// The same with the endpoint given on the command line, and an error:
	// the CLI prints EC2's code and message and exits non-zero.
	out, err = runCLI(t, w, `aws ec2 delete-volume --volume-id `+created.VolumeID+` --endpoint-url "$AWS_ENDPOINT_URL" --region us-west-2`)
	if err == nil || !strings.Contains(out, "InvalidVolume.NotFound") || !strings.Contains(out, "The volume '"+created.VolumeID+"' does not exist.") {
		t.Errorf("delete of a deleted volume: %v\n%s", err, out)
	}
	out, err = runCLI(t, w, `aws ec2 describe-volumes --filters Name=tag:Name,Values=rexray-vol --query "Volumes[].VolumeId" --output text`)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("describe after delete: %v %q", err, out)
	}
}

// TestStrictRulesWithAWSCLI: what a user typing the aws CLI meets: EC2's
// refusals (a 16,385 GiB gp2 volume, a device name past /dev/xvddx) with
// EC2's codes and words, and an instance stopped through stopping.
func TestStrictRulesWithAWSCLI(t *testing.T) {
	testenv.RequireCommands(t, "aws", "bash")
	w := newWorld(t)
	w.addInstance(t, instA, azA)
	vol := w.createVolume(t, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(azA), Size: aws.Int32(1)})

	out, err := runCLI(t, w, `aws ec2 create-volume --size 16385 --volume-type gp2 --availability-zone $AZ`)
	if err == nil || !strings.Contains(out, "(InvalidParameterValue)") || !strings.Contains(out, "Volume of 16385GiB is too large for volume type gp2; maximum is 16384GiB") {
		t.Errorf("create-volume 16385 GiB gp2: %v\n%s", err, out)
	}
	out, err = runCLI(t, w, `aws ec2 attach-volume --volume-id `+vol+` --instance-id `+instA+` --device /dev/xvdza`)
	if err == nil || !strings.Contains(out, "(InvalidParameterValue)") || !strings.Contains(out, "/dev/xvdza is not a valid EBS device name.") {
		t.Errorf("attach-volume --device /dev/xvdza: %v\n%s", err, out)
	}
	out, err = runCLI(t, w, `aws ec2 stop-instances --instance-ids `+instA+` --query 'StoppingInstances[0].[PreviousState.Name,CurrentState.Name]' --output text &&
aws ec2 wait instance-stopped --instance-ids `+instA+` &&
aws ec2 describe-instance-status --instance-ids `+instA+` --include-all-instances --query 'InstanceStatuses[0].[InstanceState.Name,InstanceStatus.Status]' --output text`)
	if err != nil || strings.Fields(out)[0] != "running" || strings.Join(strings.Fields(out)[1:], " ") != "stopping stopped not-applicable" {
		t.Errorf("stop, wait, status: %v\n%q", err, out)
	}
}
