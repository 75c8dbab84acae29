package ops

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/volspec"
)

// Check is one of adopt's checks.
type Check struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// AdoptResult is `tether adopt`'s answer.
type AdoptResult struct {
	VolumeID string            `json:"volumeId"`
	Name     string            `json:"name"`
	Cluster  string            `json:"cluster"`
	AZ       string            `json:"az"`
	Checks   []Check           `json:"checks"`
	Adopted  bool              `json:"adopted"`          // tagged now (or already tether's, with the same name)
	Already  bool              `json:"already,omitzero"` // it was tether's already
	DryRun   bool              `json:"dryRun,omitzero"`
	Tags     map[string]string `json:"tags,omitempty"` // the tags written (or that would be)
	Warnings []string          `json:"warnings,omitempty"`
}

// adopt: `tether adopt VOLUME-ID --name NAME`. Claims a volume tether did
// not create (REX-Ray's, made by hand) after checks, by tagging it as the
// cluster's tether volume NAME with the operator's credentials (tether's
// functions may not tag a volume that is not already the cluster's). The
// next task that needs NAME gets it, with its data: an adopted volume is
// never granted a format.
func (c *cmd) adopt(ctx context.Context, args []string) error {
	var co common
	fs := c.verbFlags("adopt", &co)
	name := fs.String("name", "", "the tether volume name (the task definition's volume name)")
	az := fs.String("az", "", "the availability zone the volume must be in (its tasks' AZ)")
	dry := fs.Bool("dry-run", false, "check, tag nothing")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("adopt: want one VOLUME-ID")
	}
	if err := co.check(true); err != nil {
		return err
	}
	id := pos[0]
	if err := volspec.ValidateVolumeID(id); err != nil {
		return usageErr("adopt: %v", err)
	}
	if err := volspec.ValidateName(*name); err != nil {
		return usageErr("adopt: --name: %v", err)
	}
	if _, _, taskScoped := volspec.ParseTaskVolumeName(*name); taskScoped {
		return usageErr("adopt: --name %s: names task-<task id>-<name> are task-scoped volumes, which tether creates and deletes", *name)
	}
	v, err := c.deps.Cloud.VolumeByID(ctx, id)
	if errors.Is(err, cloud.ErrNotFound) {
		return notFound("no EBS volume %s", id)
	}
	if err != nil {
		return err
	}
	key := reconcile.Key{Cluster: co.cluster, Volume: *name}
	res := AdoptResult{VolumeID: id, Name: *name, Cluster: co.cluster, AZ: v.AZ, DryRun: *dry}
	failed := false
	check := func(what string, ok bool, format string, args ...any) {
		res.Checks = append(res.Checks, Check{Check: what, OK: ok, Detail: fmt.Sprintf(format, args...)})
		failed = failed || !ok
	}

	usable := v.State == cloud.VolumeAvailable || v.State == cloud.VolumeInUse
	check("state", usable, "%s, %d GiB %s in %s", v.State, v.SizeGiB, v.Type, v.AZ)
	check("single-attach", !v.MultiAttach, "%s", map[bool]string{true: "Multi-Attach is enabled: tether serves single-attach volumes only (aws ec2 modify-volume --no-multi-attach-enabled)", false: "Multi-Attach is off"}[v.MultiAttach])

	switch owner, own := v.Tags[cloud.TagCluster], v.Tags[cloud.TagVolume]; {
	case owner == "":
		check("owner", true, "no tether tags: not tether's yet")
	case owner == co.cluster && own == *name && v.Tags[cloud.TagScope] == cloud.ScopeShared:
		res.Already = true
		check("owner", true, "already tether volume %s of cluster %s", *name, co.cluster)
	case owner == co.cluster:
		check("owner", false, "it is tether volume %s (scope %s) of cluster %s already", own, v.Tags[cloud.TagScope], owner)
	default:
		check("owner", false, "it belongs to tether cluster %s", owner)
	}

	keyVols, err := c.deps.Cloud.VolumesByKey(ctx, co.cluster, *name)
	if err != nil {
		return err
	}
	var otherKey []string
	for _, kv := range keyVols {
		if kv.ID != id && kv.State != cloud.VolumeDeleted {
			otherKey = append(otherKey, kv.ID)
		}
	}
	if len(otherKey) == 0 {
		check("name free", true, "cluster %s has no other tether volume %s", co.cluster, *name)
	} else {
		check("name free", false, "cluster %s already has tether volume %s: %v", co.cluster, *name, otherKey)
	}

	cis, err := c.deps.Cloud.ContainerInstances(ctx, co.cluster)
	if err != nil {
		return err
	}
	zones := map[string]bool{}
	ec2Of := map[string]cloud.ContainerInstance{}
	for _, ci := range cis {
		if !ci.Gone() {
			zones[ci.AZ] = true
			ec2Of[ci.EC2InstanceID] = ci
		}
	}
	switch {
	case *az != "" && *az != v.AZ:
		check("availability zone", false, "the volume is in %s, not %s", v.AZ, *az)
	case *az == "" && len(zones) > 0 && !zones[v.AZ]:
		check("availability zone", false, "the volume is in %s and cluster %s has no container instance there (%s): its tasks could never use it; give --az %s if they will run there",
			v.AZ, co.cluster, strings.Join(slices.Sorted(maps.Keys(zones)), ", "), v.AZ)
	default:
		check("availability zone", true, "%s; keep the tasks there (placement constraint attribute:ecs.availability-zone == %s)", v.AZ, v.AZ)
	}

	if len(v.Attachments) == 0 {
		check("attachment", true, "attached nowhere")
	} else {
		a := v.Attachments[0]
		ci, ok := ec2Of[a.InstanceID]
		if !ok {
			check("attachment", false, "%s to %s, which is not a container instance of cluster %s: detach it there first (unmount it, then aws ec2 detach-volume)", a.State, a.InstanceID, co.cluster)
		} else if users, err := c.usersOn(ctx, co.cluster, ci, *name); err != nil {
			return err
		} else if len(users) > 0 {
			check("attachment", false, "%s to %s, where task %s uses a volume named %s: stop it first", a.State, a.InstanceID, users[0], *name)
		} else {
			check("attachment", true, "%s to %s, where no live task uses a volume named %s: tether unmounts and detaches it there when a task needs it elsewhere (the unmount refuses while anything on the host holds it)", a.State, a.InstanceID, *name)
		}
	}

	named, err := c.deps.Cloud.VolumesByName(ctx, *name)
	if err != nil {
		return err
	}
	for _, n := range named {
		if n.ID != id && n.Tags[cloud.TagCluster] == "" && n.State != cloud.VolumeDeleted {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s is named %s too and is not tether's; once %s is adopted, tether serves %s and leaves it alone", n.ID, *name, id, *name))
		}
	}
	if old := v.Tags[cloud.TagName]; old != "" && old != *name {
		res.Warnings = append(res.Warnings, fmt.Sprintf("its Name tag %q becomes %q", old, *name))
	}

	var err2 error
	switch {
	case failed:
		err2 = refused("not adopted: %s", failedChecks(res.Checks))
	case res.Already:
		res.Adopted = true
	default:
		res.Tags = reconcile.AdoptionTags(key, c.deps.Now())
		if !*dry {
			if err := c.deps.Cloud.TagVolume(ctx, id, res.Tags); err != nil {
				return fmt.Errorf("tagging %s: %w", id, err)
			}
			res.Adopted = true
		}
	}
	if c.json {
		if err := c.printJSON(res); err != nil {
			return err
		}
		return err2
	}
	for _, ch := range res.Checks {
		fmt.Fprintf(c.io.Stdout, "%-4s %-18s %s\n", map[bool]string{true: "ok", false: "FAIL"}[ch.OK], ch.Check, ch.Detail)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(c.io.Stdout, "note %s\n", w)
	}
	switch {
	case err2 != nil:
	case res.Already:
		fmt.Fprintf(c.io.Stdout, "%s is tether volume %s of cluster %s already\n", id, *name, co.cluster)
	case *dry:
		fmt.Fprintf(c.io.Stdout, "dry run: %s would be tagged as tether volume %s of cluster %s\n", id, *name, co.cluster)
	default:
		fmt.Fprintf(c.io.Stdout, "adopted: %s is tether volume %s of cluster %s; the next task that needs %s gets it, with its data\n", id, *name, co.cluster, *name)
	}
	return err2
}

func failedChecks(cs []Check) string {
	var out []string
	for _, c := range cs {
		if !c.OK {
			out = append(out, c.Check+": "+c.Detail)
		}
	}
	return strings.Join(out, "; ")
}

// usersOn lists the live tasks on a container instance whose definitions
// have a Docker volume named name, whatever its driver (REX-Ray's
// rexray/ebs, tether, another): such a task may have the device mounted.
func (c *cmd) usersOn(ctx context.Context, cluster string, ci cloud.ContainerInstance, name string) ([]string, error) {
	var out []string
	for _, desired := range []string{"RUNNING", "STOPPED"} {
		ts, err := c.deps.Cloud.TasksOf(ctx, cluster, cloud.TaskQuery{ContainerInstance: ci.ARN, Desired: desired})
		if errors.Is(err, cloud.ErrNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if !t.Live() {
				continue
			}
			td, err := c.deps.Cloud.TaskDefinition(ctx, t.TaskDefinitionARN)
			if errors.Is(err, cloud.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, dv := range td.Volumes {
				if dv.Name == name && !slices.Contains(out, t.ARN) {
					out = append(out, t.ARN)
				}
			}
		}
	}
	return out, nil
}
