package reconcile

import (
	"context"
	"errors"
	"sort"

	"github.com/tether-ecs/tether/functions/internal/cloud"
)

// need is a live task that needs the key's volume on its instance.
type need struct {
	task cloud.Task
	spec cloud.DockerVolume
	ci   cloud.ContainerInstance
}

func (n need) instance() string { return n.ci.EC2InstanceID }

func (n need) az() string {
	if n.task.AZ != "" {
		return n.task.AZ
	}
	return n.ci.AZ
}

// want is the desired state of one key, as ECS describes it.
type want struct {
	needers []need       // desired RUNNING, placed, not stopped; oldest first
	users   []cloud.Task // known live tasks that use the volume (needers and stopping ones)
	task    *cloud.Task  // task scope: the task, nil when ECS no longer knows it
	ciByARN map[string]cloud.ContainerInstance
}

// taskGone: task scope and the task has stopped for good.
func (w want) taskGone() bool { return w.task == nil || (w.task.LastStatus == "STOPPED") }

// instances lists the instances needers are on, the target's first.
func (w want) byInstance() map[string][]need {
	out := map[string][]need{}
	for _, n := range w.needers {
		out[n.instance()] = append(out[n.instance()], n)
	}
	return out
}

// namedTasks describes the tasks the triggers named (tasks that stopped or
// are stopping are not in LiveTasks, and a task just placed may not be
// listed yet): once per invocation, again when that answer is older than
// Timing.Fresh (an invocation may run for a minute).
func (p *pass) namedTasks(ctx context.Context) ([]cloud.Task, error) {
	inv := p.inv
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if now := p.r.now(); inv.readAt.IsZero() || now.Sub(inv.readAt) > p.r.t.Fresh {
		arns := make([]string, 0, len(inv.named))
		for a := range inv.named {
			arns = append(arns, a)
		}
		sort.Strings(arns)
		if len(arns) > 0 {
			ts, err := p.r.cloud.Tasks(ctx, p.key.Cluster, arns)
			if err != nil {
				return nil, err
			}
			for _, t := range ts {
				inv.tasks[t.ARN] = t
			}
		}
		inv.readAt = now
	}
	out := make([]cloud.Task, 0, len(inv.tasks))
	for _, t := range inv.tasks {
		out = append(out, t)
	}
	return out, nil
}

// desired reads ECS: which live tasks use the volume, and where.
func (p *pass) desired(ctx context.Context) (want, error) {
	w := want{ciByARN: map[string]cloud.ContainerInstance{}}
	var candidates []cloud.Task
	if id, _, taskScoped := parseTaskVolumeName(p.key.Volume); taskScoped {
		ts, err := p.r.cloud.Tasks(ctx, p.key.Cluster, []string{id})
		if err != nil {
			return want{}, err
		}
		if len(ts) > 0 {
			t := ts[0]
			w.task = &t
			candidates = ts
		}
	} else {
		live, err := p.r.cloud.LiveTasks(ctx, p.key.Cluster)
		if err != nil {
			return want{}, err
		}
		named, err := p.namedTasks(ctx)
		if err != nil {
			return want{}, err
		}
		byARN := map[string]cloud.Task{}
		for _, t := range live {
			byARN[t.ARN] = t
		}
		for _, t := range named { // fresher: described for this invocation
			if old, ok := byARN[t.ARN]; !ok || t.Version >= old.Version {
				byARN[t.ARN] = t
			}
		}
		for _, t := range byARN {
			candidates = append(candidates, t)
		}
	}
	sort.Slice(candidates, func(i, j int) bool {
		if !candidates[i].CreatedAt.Equal(candidates[j].CreatedAt) {
			return candidates[i].CreatedAt.Before(candidates[j].CreatedAt)
		}
		return candidates[i].ARN < candidates[j].ARN
	})
	for _, t := range candidates {
		if !t.Live() {
			continue
		}
		spec, uses, err := p.uses(ctx, t)
		if err != nil {
			return want{}, err
		}
		if !uses {
			continue
		}
		w.users = append(w.users, t)
		if t.DesiredStatus != "RUNNING" || t.ContainerInstanceARN == "" {
			continue
		}
		ci, err := p.containerInstance(ctx, t.ContainerInstanceARN)
		if err != nil {
			return want{}, err
		}
		if ci.EC2InstanceID == "" {
			continue // not on an instance ECS still knows
		}
		w.ciByARN[ci.ARN] = ci
		w.needers = append(w.needers, need{task: t, spec: spec, ci: ci})
	}
	return w, nil
}

// uses reports whether task t uses the key's volume, and its definition.
func (p *pass) uses(ctx context.Context, t cloud.Task) (cloud.DockerVolume, bool, error) {
	td, err := p.r.cloud.TaskDefinition(ctx, t.TaskDefinitionARN)
	if errors.Is(err, cloud.ErrNotFound) {
		return cloud.DockerVolume{}, false, nil
	}
	if err != nil {
		return cloud.DockerVolume{}, false, err
	}
	v, ok := volumeOf(p.key, t.ARN, td)
	return v, ok, nil
}

func (p *pass) containerInstance(ctx context.Context, arn string) (cloud.ContainerInstance, error) {
	ci, err := p.r.cloud.ContainerInstance(ctx, p.key.Cluster, arn)
	if errors.Is(err, cloud.ErrNotFound) {
		return cloud.ContainerInstance{ARN: arn, Status: "INACTIVE"}, nil
	}
	return ci, err
}

// containerInstanceOf finds the container instance of an EC2 instance;
// ok false when ECS no longer knows it (deregistered).
func (p *pass) containerInstanceOf(ctx context.Context, w want, instanceID string) (cloud.ContainerInstance, bool, error) {
	for _, ci := range w.ciByARN {
		if ci.EC2InstanceID == instanceID {
			return ci, true, nil
		}
	}
	cis, err := p.r.cloud.ContainerInstances(ctx, p.key.Cluster)
	if err != nil {
		return cloud.ContainerInstance{}, false, err
	}
	for _, ci := range cis {
		if ci.EC2InstanceID == instanceID {
			return ci, true, nil
		}
	}
	return cloud.ContainerInstance{}, false, nil
}

// usersOn lists the live tasks on an instance that use the volume:
// needers there plus tasks that are stopping but not stopped.
func (p *pass) usersOn(ctx context.Context, w want, ci cloud.ContainerInstance) ([]cloud.Task, error) {
	var out []cloud.Task
	seen := map[string]bool{}
	for _, t := range w.users {
		if t.ContainerInstanceARN == ci.ARN {
			out = append(out, t)
			seen[t.ARN] = true
		}
	}
	stopping, err := p.r.cloud.StoppingTasks(ctx, p.key.Cluster, ci.ARN)
	if errors.Is(err, cloud.ErrNotFound) {
		return out, nil // deregistered: ECS runs nothing there any more
	}
	if err != nil {
		return nil, err
	}
	for _, t := range stopping {
		if seen[t.ARN] || !t.Live() {
			continue
		}
		if _, ok, err := p.uses(ctx, t); err != nil {
			return nil, err
		} else if ok {
			out = append(out, t)
		}
	}
	return out, nil
}
