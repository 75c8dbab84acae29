package reconcile_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/tether-ecs/tether/functions/internal/cloud/cloudtest"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/volspec"
)

// The deployment's defaults (template.yaml's DefaultVolumeType,
// DefaultSizeGiB, DefaultKmsKeyId) fill what driverOpts leave out, and its
// extra tags go on every volume tether creates, under tether's own.
func TestDeploymentDefaultsAndExtraTags(t *testing.T) {
	h := newHarness(t, func(c *reconcile.Config) {
		c.Defaults = volspec.Defaults{SizeGiB: 200, VolumeType: "st1", KMSKeyID: "alias/tether"}
		c.ExtraTags = map[string]string{"CostCenter": "db", "team": "storage"}
	})
	h.w.AddInstance("i-a", "us-east-1a")
	td := "arn:aws:ecs:us-east-1:111122223333:task-definition/plain:1"
	h.w.AddTaskDef(cloudtest.TaskDef{ARN: td, Volumes: []cloudtest.DockerVolume{{Name: "plain", Driver: "tether", Scope: "shared", Autoprovision: true}}})
	task := h.w.PlaceTask(td, "i-a")
	h.settle(300)
	h.wantRunning(task)
	v := h.oneVolume("plain")
	if v.Type != "st1" || v.Size != 200 || !v.Encrypted || v.KMSKeyID != "alias/tether" {
		t.Fatalf("volume %+v: want the deployment's st1, 200 GiB, alias/tether", v)
	}
	if v.Tags["CostCenter"] != "db" || v.Tags["team"] != "storage" || v.Tags["tether:volume"] != "plain" || v.Tags["Name"] != "plain" {
		t.Fatalf("tags %v: want the extra tags beside tether's", v.Tags)
	}
	// driverOpts still win (the shared test task definition asks for gp2, 5 GiB).
	h.w.AddInstance("i-b", "us-east-1a")
	other := h.w.PlaceTask(tdShared, "i-b")
	h.settle(300)
	h.wantRunning(other)
	if v := h.oneVolume(volName); v.Type != "gp2" || v.Size != 5 {
		t.Fatalf("volume %+v: want driverOpts' gp2, 5 GiB", v)
	}
}

func TestDefaultsFromTheEnvironmentAreChecked(t *testing.T) {
	base := map[string]string{
		reconcile.EnvCluster: "c", reconcile.EnvMountDocument: "m", reconcile.EnvUnmountDocument: "u",
	}
	build := func(extra map[string]string) error {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		_, err := reconcile.NewFromEnv(context.Background(), func(k string) string { return env[k] }, aws.Config{Region: "us-east-1"}, &bytes.Buffer{}, &bytes.Buffer{})
		return err
	}
	if err := build(map[string]string{reconcile.EnvDefaultType: "sc1", reconcile.EnvDefaultSize: "500", reconcile.EnvExtraTags: `{"CostCenter":"db"}`, reconcile.EnvKMSKeyID: ""}); err != nil {
		t.Fatalf("good defaults refused: %v", err)
	}
	for name, env := range map[string]map[string]string{
		"sc1 of 16 GiB":     {reconcile.EnvDefaultType: "sc1"},
		"unknown type":      {reconcile.EnvDefaultType: "gp9"},
		"size not a number": {reconcile.EnvDefaultSize: "big"},
		"tags not JSON":     {reconcile.EnvExtraTags: "CostCenter=db"},
		"aws: tag":          {reconcile.EnvExtraTags: `{"aws:cost":"x"}`},
		"tether's tag":      {reconcile.EnvExtraTags: `{"tether:cluster":"other"}`},
		"Name tag":          {reconcile.EnvExtraTags: `{"Name":"x"}`},
		"bad KMS key":       {reconcile.EnvKMSKeyID: "my key"},
	} {
		if err := build(env); err == nil || !strings.Contains(err.Error(), "reconcile:") {
			t.Errorf("%s: NewFromEnv = %v, want a refusal", name, err)
		}
	}
}
