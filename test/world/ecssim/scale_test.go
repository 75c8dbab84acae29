package ecssim_test

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/ecssim"
	"github.com/tether-ecs/tether/test/world/fakehost"
)

// Many handoffs in a row: drain the instance that runs mysql, make the other
// one ACTIVE again, repeat. The volume's data must follow every time.
func TestManyHandoffs(t *testing.T) {
	handoffs := 200
	if testenv.Short() {
		handoffs = 20
	}
	w := newWorld(t, ecssim.Timing{})
	w.cluster(t)
	ctx := ctxT(t)
	arns := map[string]string{
		"i-0aaaaaaaaaaaaaaa1": w.addHost(t, fakehost.Options{InstanceID: "i-0aaaaaaaaaaaaaaa1", AZ: "us-west-2a"}),
		"i-0bbbbbbbbbbbbbbb2": w.addHost(t, fakehost.Options{InstanceID: "i-0bbbbbbbbbbbbbbb2", AZ: "us-west-2a"}),
	}
	startHandoff(t, w)
	w.seedService(t, w.registerSeedTaskDef(t, "us-west-2a"))
	var order []string
	for i := 0; i <= handoffs; i++ {
		cur := w.waitLive(ctx, t, "mysql-svc", fmt.Sprintf("mysql RUNNING after handoff %d", i), func(ti ecssim.TaskInfo) bool {
			return isRunning(ti) && (len(order) == 0 || ti.Arn != order[len(order)-1])
		})
		order = append(order, cur.Arn)
		if i == handoffs {
			break
		}
		for id, arn := range arns {
			status := types.ContainerInstanceStatusActive
			if id == cur.EC2InstanceID {
				status = types.ContainerInstanceStatusDraining
			}
			if _, err := w.ecs.UpdateContainerInstancesState(ctx, &ecs.UpdateContainerInstancesStateInput{Cluster: aws.String(testCluster), ContainerInstances: []string{arn}, Status: status}); err != nil {
				t.Fatal(err)
			}
		}
	}
	disk, _ := w.disks.Volume("vol-0123456789abcdef0")
	if disk.Formats != 1 || disk.Unclean != 0 || len(disk.Writes) != len(order) {
		t.Fatalf("after %d handoffs: %d writes, %d formats, %d unclean", handoffs, len(disk.Writes), disk.Formats, disk.Unclean)
	}
	for i := range order {
		if disk.Writes[i] != order[i] {
			t.Fatalf("write %d is %s, want %s", i, disk.Writes[i], order[i])
		}
	}
}
