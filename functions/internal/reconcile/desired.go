package reconcile

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/volspec"
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
	needers  []need       // desired RUNNING, placed, not stopped; oldest first
	users    []cloud.Task // known live tasks that use the volume (needers and stopping ones)
	task     *cloud.Task  // task scope: the task, nil when ECS no longer knows it
	ciByARN  map[string]cloud.ContainerInstance
	families []string // task definition families whose tasks use the volume
}

// taskGone: task scope and the task has stopped for good.
func (w want) taskGone() bool { return w.task == nil || (w.task.LastStatus == "STOPPED") }

// namedTasks: the tasks this invocation's triggers named, as their newest
// events show them; those whose events lacked the details are described
// once per invocation (again when that answer is older than Timing.Fresh).
func (p *pass) namedTasks(ctx context.Context) ([]cloud.Task, error) {
	inv := p.inv
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if now := p.r.now(); len(inv.named) > 0 && (inv.readAt.IsZero() || now.Sub(inv.readAt) > p.r.t.Fresh) {
		arns := make([]string, 0, len(inv.named))
		for a := range inv.named {
			arns = append(arns, a)
		}
		sort.Strings(arns)
		ts, err := p.r.cloud.Tasks(ctx, p.key.Cluster, arns)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			inv.seen(t)
		}
		inv.readAt = now
	}
	out := make([]cloud.Task, 0, len(inv.tasks))
	for _, t := range inv.tasks {
		out = append(out, t)
	}
	return out, nil
}

// familiesOf: the task definition families whose tasks use the key's
// volume, so that only their tasks are listed (never the whole cluster's):
// from the tasks named and this process's memory, else from the volume's
// tether:families tag (read with the volume, which the pass then needs anyway).
func (p *pass) familiesOf(ctx context.Context, named []cloud.Task) ([]string, error) {
	for _, t := range named {
		if _, ok, err := p.uses(ctx, t); err != nil {
			return nil, err
		} else if ok {
			p.r.mem.noteFamilies(p.key, t.Family())
		}
	}
	fams := p.r.mem.familiesOf(p.key)
	if len(fams) > 0 {
		return fams, nil
	}
	vols, err := p.r.cloud.VolumesByKey(ctx, p.key.Cluster, p.key.Volume)
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		for _, f := range splitFamilies(v.Tags[cloud.TagFamilies]) {
			if !slices.Contains(fams, f) {
				fams = append(fams, f)
			}
		}
	}
	slices.Sort(fams)
	return fams, nil
}

// splitFamilies reads a volume's tether:families tag.
func splitFamilies(tag string) []string {
	var out []string
	for _, f := range strings.Split(tag, ",") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// desired reads ECS: which live tasks use the volume, and where. The reads
// are scoped to the key (its task, or its families' tasks) and shared by
// the invocation's passes: their cost does not grow with the cluster.
func (p *pass) desired(ctx context.Context) (want, error) {
	w := want{ciByARN: map[string]cloud.ContainerInstance{}}
	var candidates []cloud.Task
	if id, _, taskScoped := volspec.ParseTaskVolumeName(p.key.Volume); taskScoped {
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
		named0, err := p.namedTasks(ctx)
		if err != nil {
			return want{}, err
		}
		if w.families, err = p.familiesOf(ctx, named0); err != nil {
			return want{}, err
		}
		byARN := map[string]cloud.Task{}
		named := map[string]cloud.Task{}
		for _, t := range named0 {
			named[t.ARN] = t
		}
		for _, f := range w.families {
			arns, err := p.r.cloud.ListTaskARNs(ctx, p.key.Cluster, cloud.TaskQuery{Family: f})
			if err != nil {
				return want{}, err
			}
			var ask []string
			for _, arn := range arns {
				if t, ok := named[arn]; ok && t.DesiredStatus == "RUNNING" {
					byARN[arn] = t // this invocation's event says it all
				} else {
					ask = append(ask, arn)
				}
			}
			if len(ask) > 0 {
				ts, err := p.r.cloud.Tasks(ctx, p.key.Cluster, ask)
				if err != nil {
					return want{}, err
				}
				for _, t := range ts {
					byARN[t.ARN] = t
				}
			}
		}
		for _, t := range named0 { // an event newer than the answer wins
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
		ci, err := p.r.cloud.ContainerInstanceHome(ctx, p.key.Cluster, t.ContainerInstanceARN)
		if errors.Is(err, cloud.ErrNotFound) {
			continue // not on an instance ECS still knows
		}
		if err != nil {
			return want{}, err
		}
		if ci.EC2InstanceID == "" {
			continue
		}
		w.ciByARN[ci.ARN] = ci
		w.needers = append(w.needers, need{task: t, spec: spec, ci: ci})
	}
	if err := p.claimReplica(ctx, w); err != nil {
		return want{}, err
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
	if spec, uses, isReplica, err := p.replicaUses(ctx, t, td); isReplica || err != nil {
		return spec, uses, err
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
		if ci.EC2InstanceID == instanceID && ci.Status != "" {
			return ci, !ci.Gone(), nil
		}
	}
	ci, err := p.r.cloud.ContainerInstanceOf(ctx, p.key.Cluster, instanceID)
	if errors.Is(err, cloud.ErrNotFound) {
		return cloud.ContainerInstance{}, false, nil
	}
	if err != nil {
		return cloud.ContainerInstance{}, false, err
	}
	return ci, !ci.Gone(), nil
}

// usersOn lists the live tasks on an instance that use the volume: needers
// there plus tasks that are stopping but not stopped (listed by the
// instance and the key's families).
func (p *pass) usersOn(ctx context.Context, w want, ci cloud.ContainerInstance) ([]cloud.Task, error) {
	var out []cloud.Task
	seen := map[string]bool{}
	for _, t := range w.users {
		if t.ContainerInstanceARN == ci.ARN {
			out = append(out, t)
			seen[t.ARN] = true
		}
	}
	if p.stoppedEventOn(ci.ARN) {
		// This invocation's STOPPED event of a task of the key there: the
		// volume's holder is gone. Another stopping task there that still
		// uses it (rare: two of the key's tasks on one host) makes
		// tether-agent refuse the unmount (busy) until its containers
		// stop; listing the instance's stopping tasks would only cost ECS
		// a read per handoff to learn that.
		return out, nil
	}
	fams := w.families
	if len(fams) == 0 {
		fams = p.r.mem.familiesOf(p.key)
	}
	if id, _, taskScoped := volspec.ParseTaskVolumeName(p.key.Volume); taskScoped {
		ts, err := p.r.cloud.Tasks(ctx, p.key.Cluster, []string{id})
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if !seen[t.ARN] && t.ContainerInstanceARN == ci.ARN && t.Live() {
				out = append(out, t)
			}
		}
		return out, nil
	}
	for _, f := range fams {
		arns, err := p.r.cloud.ListTaskARNs(ctx, p.key.Cluster, cloud.TaskQuery{Family: f, ContainerInstance: ci.ARN, Desired: "STOPPED"})
		if errors.Is(err, cloud.ErrNotFound) {
			return out, nil // deregistered: ECS runs nothing there any more
		}
		if err != nil {
			return nil, err
		}
		var ask []string
		for _, arn := range arns {
			if n, ok := p.namedTask(arn); ok && n.LastStatus == "STOPPED" {
				continue // this invocation's event says it stopped: it stays so
			}
			ask = append(ask, arn)
		}
		stopping, err := p.r.cloud.Tasks(ctx, p.key.Cluster, ask)
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
				seen[t.ARN] = true
			}
		}
	}
	return out, nil
}

// namedTask: a task as this invocation's newest event about it shows it.
func (p *pass) namedTask(arn string) (cloud.Task, bool) {
	p.inv.mu.Lock()
	defer p.inv.mu.Unlock()
	t, ok := p.inv.tasks[arn]
	return t, ok
}

// stoppedEventOn: a task event of this invocation says a task that names
// the key stopped on container instance ciARN.
func (p *pass) stoppedEventOn(ciARN string) bool {
	p.inv.mu.Lock()
	defer p.inv.mu.Unlock()
	for arn, t := range p.inv.tasks {
		if t.LastStatus != "STOPPED" || t.ContainerInstanceARN != ciARN {
			continue
		}
		if n := p.inv.versions[arn]; n != nil && n.keys[p.key] {
			return true
		}
	}
	return false
}
