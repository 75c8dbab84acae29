package ops

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

// facts is what the command knows about one tether volume (a key), read
// from EC2, ECS and SSM: the same facts the reconciler decides on.
type facts struct {
	key     reconcile.Key
	now     time.Time
	volume  *cloud.Volume  // the key's volume; nil: none yet
	others  []cloud.Volume // further volumes with the key's tags (a person's or a bug's doing)
	unowned []cloud.Volume // volumes named like the key that tether does not own
	// tasks that use the volume: the live ones and those stopped within
	// recentStopped, oldest first.
	tasks     []cloud.Task
	instances map[string]instance // by EC2 instance id
	ec2Of     map[string]string   // container instance ARN -> EC2 instance id
	// mount and unmount: the newest of each for the current attachment
	// (read in full: status, exit, the agent's line); released: the newest
	// unmount on the instance the volume was last released from, when it
	// is attached elsewhere or nowhere.
	mount, unmount, released *cloud.Command
	releasedFrom             string
	// moves: snapshots of an AZ move of the volume (driverOpt azmove),
	// read when it is available.
	moves []cloud.EBSSnapshot
}

// instance is what EC2 and ECS say about one instance.
type instance struct {
	ID             string `json:"id"`
	State          string `json:"state,omitempty"` // EC2's
	AZ             string `json:"az,omitempty"`
	ECSStatus      string `json:"ecsStatus,omitempty"` // the container instance's; "" not registered
	AgentConnected bool   `json:"agentConnected"`
	// SSM: the instance's SSM agent as SSM sees it (PingStatus: Online,
	// ConnectionLost, Inactive; "not registered"; "" not asked).
	SSM string `json:"ssm,omitempty"`
}

func (f *facts) instanceOfTask(t cloud.Task) string { return f.ec2Of[t.ContainerInstanceARN] }

func started(t cloud.Task) bool { return !t.StartedAt.IsZero() || t.LastStatus == "RUNNING" }

// gather reads the facts of key. vol, when known, is the key's volume.
func (c *cmd) gather(ctx context.Context, key reconcile.Key, co common, vol *cloud.Volume) (*facts, error) {
	f := &facts{key: key, now: c.deps.Now(), instances: map[string]instance{}, ec2Of: map[string]string{}}
	cl := c.deps.Cloud
	if vol == nil {
		vols, err := cl.VolumesByKey(ctx, key.Cluster, key.Volume)
		if err != nil {
			return nil, err
		}
		vols = slices.DeleteFunc(vols, func(v cloud.Volume) bool { return v.State == cloud.VolumeDeleted })
		if len(vols) > 0 {
			sortPrimary(vols)
			vol, f.others = &vols[0], vols[1:]
		}
	}
	f.volume = vol
	if vol == nil {
		named, err := cl.VolumesByName(ctx, key.Volume)
		if err != nil {
			return nil, err
		}
		for _, v := range named {
			if v.Tags[cloud.TagCluster] == "" && v.State != cloud.VolumeDeleted && v.State != cloud.VolumeDeleting {
				f.unowned = append(f.unowned, v)
			}
		}
	}
	cis, err := cl.ContainerInstances(ctx, key.Cluster)
	if err != nil {
		return nil, err
	}
	for _, ci := range cis {
		f.ec2Of[ci.ARN] = ci.EC2InstanceID
		f.instances[ci.EC2InstanceID] = instance{ID: ci.EC2InstanceID, AZ: ci.AZ, ECSStatus: ci.Status, AgentConnected: ci.AgentConnected}
	}
	if f.tasks, err = c.tasksUsing(ctx, key, vol); err != nil {
		return nil, err
	}
	if vol != nil && len(vol.Attachments) == 0 && vol.State == cloud.VolumeAvailable {
		if f.moves, err = cl.SnapshotsTagged(ctx, cloud.TagMoveOf, vol.ID); err != nil {
			return nil, err
		}
	}
	ids := map[string]bool{}
	if vol != nil {
		for _, a := range vol.Attachments {
			ids[a.InstanceID] = true
		}
	}
	for _, t := range f.tasks {
		if id := f.instanceOfTask(t); id != "" {
			ids[id] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		in, err := cl.Instance(ctx, id)
		switch {
		case errors.Is(err, cloud.ErrNotFound):
			in = cloud.Instance{ID: id, State: "unknown to EC2 (terminated)"}
		case err != nil:
			return nil, err
		}
		cur := f.instances[id]
		cur.ID, cur.State = id, in.State
		if cur.AZ == "" {
			cur.AZ = in.AZ
		}
		f.instances[id] = cur
	}
	if err := c.readPings(ctx, f); err != nil {
		return nil, err
	}
	if err := c.readCommands(ctx, f, co); err != nil {
		return nil, err
	}
	return f, nil
}

// readPings asks SSM whether the instances' SSM agents answer (tether
// reaches the hosts only through them).
func (c *cmd) readPings(ctx context.Context, f *facts) error {
	if c.deps.Pings == nil {
		return nil
	}
	var ids []string
	for id, in := range f.instances {
		if in.State != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	in := &ssm.DescribeInstanceInformationInput{Filters: []ssmtypes.InstanceInformationStringFilter{{Key: aws.String("InstanceIds"), Values: ids}}}
	seen := map[string]string{}
	for {
		out, err := c.deps.Pings.DescribeInstanceInformation(ctx, in)
		if err != nil {
			return fmt.Errorf("ssm DescribeInstanceInformation: %w", err)
		}
		for _, ii := range out.InstanceInformationList {
			seen[aws.ToString(ii.InstanceId)] = string(ii.PingStatus)
		}
		if aws.ToString(out.NextToken) == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	for _, id := range ids {
		cur := f.instances[id]
		cur.SSM = cmp.Or(seen[id], "not registered")
		f.instances[id] = cur
	}
	return nil
}

// sortPrimary orders a key's volumes as the reconciler chooses among them:
// the attached one, else the oldest.
func sortPrimary(vols []cloud.Volume) {
	sort.SliceStable(vols, func(i, j int) bool {
		ai, aj := len(vols[i].Attachments) > 0, len(vols[j].Attachments) > 0
		if ai != aj {
			return ai
		}
		return vols[i].CreateTime.Before(vols[j].CreateTime)
	})
}

// tasksUsing lists the tasks that use key: the cluster's live tasks whose
// definitions name it, and the tasks of their families (and of the
// volume's tether:families) stopped within recentStopped.
func (c *cmd) tasksUsing(ctx context.Context, key reconcile.Key, vol *cloud.Volume) ([]cloud.Task, error) {
	cl := c.deps.Cloud
	if id, _, taskScoped := volspec.ParseTaskVolumeName(key.Volume); taskScoped {
		return cl.Tasks(ctx, key.Cluster, []string{id})
	}
	live, err := cl.LiveTasks(ctx, key.Cluster)
	if err != nil {
		return nil, err
	}
	fams := map[string]bool{}
	if vol != nil {
		for _, fam := range strings.Split(vol.Tags[cloud.TagFamilies], ",") {
			if fam != "" {
				fams[fam] = true
			}
		}
	}
	var out []cloud.Task
	seen := map[string]bool{}
	add := func(ts []cloud.Task, live bool) error {
		for _, t := range ts {
			if seen[t.ARN] || (!live && c.deps.Now().Sub(t.StoppedAt) > recentStopped && t.LastStatus == "STOPPED") {
				continue
			}
			uses, err := c.uses(ctx, key, t)
			if err != nil {
				return err
			}
			if uses {
				seen[t.ARN] = true
				fams[t.Family()] = true
				out = append(out, t)
			}
		}
		return nil
	}
	if err := add(live, true); err != nil {
		return nil, err
	}
	for _, fam := range slices.Sorted(maps.Keys(fams)) {
		stopped, err := cl.TasksOf(ctx, key.Cluster, cloud.TaskQuery{Family: fam, Desired: "STOPPED"})
		if err != nil && !errors.Is(err, cloud.ErrNotFound) {
			return nil, err
		}
		if err := add(stopped, false); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// uses reports whether task t's definition names key.
func (c *cmd) uses(ctx context.Context, key reconcile.Key, t cloud.Task) (bool, error) {
	td, err := c.deps.Cloud.TaskDefinition(ctx, t.TaskDefinitionARN)
	if errors.Is(err, cloud.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if slices.Contains(reconcile.TaskKeys(key.Cluster, t.ARN, td), key) {
		return true, nil
	}
	if len(reconcile.Replicated(td)) == 0 {
		return false, nil
	}
	vols, err := c.deps.Cloud.VolumesByKey(ctx, key.Cluster, key.Volume)
	if err != nil {
		return false, err
	}
	return slices.Contains(reconcile.ReplicaKeysOf(key.Cluster, t.ARN, td, vols), key), nil
}

// readCommands finds tether's newest mount and unmount of the volume for
// its attachment, and the unmount that released it from the instance of
// its last stopped holder.
func (c *cmd) readCommands(ctx context.Context, f *facts, co common) error {
	if f.volume == nil {
		return nil
	}
	mountDoc, unmountDoc := co.documents()
	v := *f.volume
	if len(v.Attachments) > 0 {
		a := v.Attachments[0]
		var err error
		if f.mount, err = c.newest(ctx, mountDoc, agentproto.StepMount, v.ID, a.InstanceID, a.AttachTime.Add(-time.Second), token(a)); err != nil {
			return err
		}
		if f.unmount, err = c.newest(ctx, unmountDoc, agentproto.StepUnmount, v.ID, a.InstanceID, a.AttachTime.Add(-time.Second), token(a)); err != nil {
			return err
		}
	}
	// The last holder that stopped on another instance: the release from there.
	for i := len(f.tasks) - 1; i >= 0; i-- {
		t := f.tasks[i]
		from := f.instanceOfTask(t)
		if t.LastStatus != "STOPPED" || from == "" || t.StoppedAt.IsZero() || (len(v.Attachments) > 0 && v.Attachments[0].InstanceID == from) {
			continue
		}
		cmd, err := c.newest(ctx, unmountDoc, agentproto.StepUnmount, v.ID, from, t.StoppedAt.Add(-time.Minute), "")
		if err != nil {
			return err
		}
		f.released, f.releasedFrom = cmd, from
		break
	}
	return nil
}

// newest reads the newest command of doc for volumeID on inst since after
// (for the attachment tok, when given), in full; nil when there is none.
func (c *cmd) newest(ctx context.Context, doc, plugin, volumeID, inst string, after time.Time, tok string) (*cloud.Command, error) {
	list, err := c.deps.Cloud.Commands(ctx, doc, inst, after)
	if err != nil {
		return nil, fmt.Errorf("%s commands on %s: %w", doc, inst, err)
	}
	for _, cmd := range list {
		cmd, its := cmd.ForVolume(volumeID) // an unmount may name several volumes
		if !its {
			continue
		}
		if at := cmd.Params[agentproto.ParamAttachment]; tok != "" && at != "" && at != tok {
			continue
		}
		full, err := c.deps.Cloud.Command(ctx, cmd.ID, inst, plugin)
		if errors.Is(err, cloud.ErrNotFound) {
			return &cmd, nil // SSM lists it before it answers for it
		}
		if err != nil {
			return nil, err
		}
		full.Requested, full.Params = cmd.Requested, cmd.Params
		full, _ = full.ForVolume(volumeID)
		return &full, nil
	}
	return nil, nil
}

// token names an attachment as the reconciler's commands do.
func token(a cloud.Attachment) string {
	return agentproto.AttachmentToken(a.InstanceID, a.AttachTime.UnixMilli())
}
