package reconcile

// Per-replica volumes (driverOpt replicas=true, issue 12).
//
// A shared volume NAME marked replicas=true is not one EBS volume but one
// per replica: a task that uses it gets NAME-<N> (volspec.ReplicaName), a
// key of its own that the rest of the reconciler converges like any shared
// volume. Which task holds which ordinal is decided from facts anyone can
// read back, never from a timer or from this process's memory:
//
//   - a volume NAME-<N> tagged tether:replica-task=<task ARN> is held by
//     that task for as long as ECS does not say it is STOPPED (a task ECS
//     no longer knows holds nothing); a task named on several volumes holds
//     the lowest of them only;
//   - every other task that needs NAME (desired RUNNING, placed), oldest
//     first (created at, then ARN), gets the lowest ordinal that is free in
//     its AZ: no volume at all, or a volume in its AZ that nobody holds.
//     If a lower ordinal in its AZ is held by a task that is stopping
//     (desired STOPPED, not yet STOPPED) it waits for that one instead, so
//     the replacement after a drain or a deploy takes its predecessor's
//     volume rather than a new one.
//
// The assignment is a pure function of those facts (assign), so every
// process and every pass that reads the same facts reaches the same
// answer, whatever order events came in. The key's own pass makes an
// assignment a fact before it attaches anything: CreateVolume carries the
// holder's tag, or the pass tags the existing volume with it. A volume has
// one tether:replica-task tag, so at any read a volume has at most one
// holder; and a task holds at most one ordinal (the lowest naming it).
// Volumes are never deleted: scale-in leaves them, unheld, for the tasks
// of a later scale-out.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/volspec"
)

// Tags of a replica's volume (docs/contracts.md).
const (
	// TagReplicaOf: the shared volume name the volume is a replica of.
	TagReplicaOf = "tether:replica-of"
	// TagReplica: its ordinal (decimal).
	TagReplica = "tether:replica"
	// TagReplicaTask: the task ARN that holds (or last held) the replica.
	TagReplicaTask = "tether:replica-task"
)

// isReplicated: a shared tether volume whose driverOpts say replicas=true
// (keys matched case-insensitively, as volspec does; a bad value is not
// replicated here and is refused by volspec where the options are parsed).
func isReplicated(v cloud.DockerVolume) bool {
	if v.Scope == "task" {
		return false
	}
	for k, val := range v.DriverOpts {
		if strings.EqualFold(k, volspec.OptReplicas) {
			b, err := strconv.ParseBool(strings.TrimSpace(val))
			return err == nil && b
		}
	}
	return false
}

// replicaSpec: the replicated tether volume named base in td, if any.
func replicaSpec(td cloud.TaskDefinition, base string) (cloud.DockerVolume, bool) {
	for _, v := range td.Volumes {
		if isTetherDriver(v.Driver) && v.Name == base && isReplicated(v) {
			return v, true
		}
	}
	return cloud.DockerVolume{}, false
}

// replicaVol is one replica volume as EC2 shows it.
type replicaVol struct {
	ordinal int
	id      string
	az      string
	holder  string // TagReplicaTask, "" for none
	at      string // the instance it is attached to (in any attachment state), "" if none
}

// replicaFacts are what an assignment is made from.
type replicaFacts struct {
	vols []replicaVol
	// known: tasks as ECS describes them now, by ARN: the holders named by
	// tags and the live tasks that use the name; a holder absent from it is
	// one ECS no longer knows.
	known map[string]cloud.Task
	// needers: the live tasks that use the name (any status; those not
	// desired RUNNING or not placed get no new ordinal).
	needers []string
	// azOf: each needer's AZ ("" when not placed).
	azOf map[string]string
}

// assignment is who holds which ordinal.
type assignment struct {
	holder map[int]string // ordinal -> task ARN
	of     map[string]int // task ARN -> ordinal
	// waits: task ARN -> the ordinal it waits for (held by a stopping task).
	waits map[string]int
}

// holderGone: a task named by a tag holds nothing once ECS says it is
// STOPPED, or no longer knows it.
func holderGone(t cloud.Task, ok bool) bool { return !ok || t.LastStatus == "STOPPED" }

// assign is the assignment the facts give (see the package comment above).
func assign(f replicaFacts) assignment {
	a := assignment{holder: map[int]string{}, of: map[string]int{}, waits: map[string]int{}}
	vols := slices.Clone(f.vols)
	sort.Slice(vols, func(i, j int) bool {
		if vols[i].ordinal != vols[j].ordinal {
			return vols[i].ordinal < vols[j].ordinal
		}
		return vols[i].id < vols[j].id
	})
	azOfOrdinal := map[int]string{}
	for _, v := range vols {
		if _, dup := azOfOrdinal[v.ordinal]; dup {
			continue // a second volume of one ordinal is never chosen
		}
		azOfOrdinal[v.ordinal] = v.az
		if v.holder == "" {
			continue
		}
		t, ok := f.known[v.holder]
		if holderGone(t, ok) {
			continue
		}
		if _, has := a.of[v.holder]; has {
			continue
		}
		a.holder[v.ordinal], a.of[v.holder] = v.holder, v.ordinal
	}
	var pending []cloud.Task
	for _, arn := range f.needers {
		t, ok := f.known[arn]
		if _, has := a.of[arn]; has || !ok || t.DesiredStatus != "RUNNING" || t.LastStatus == "STOPPED" || f.azOf[arn] == "" {
			continue
		}
		pending = append(pending, t)
	}
	sort.Slice(pending, func(i, j int) bool {
		if !pending[i].CreatedAt.Equal(pending[j].CreatedAt) {
			return pending[i].CreatedAt.Before(pending[j].CreatedAt)
		}
		return pending[i].ARN < pending[j].ARN
	})
	waitedFor := map[int]bool{}
	for _, t := range pending {
		az := f.azOf[t.ARN]
		for n := 0; n < volspec.MaxReplicas; n++ {
			vaz, exists := azOfOrdinal[n]
			if exists && vaz != az {
				continue // another AZ's replica
			}
			h, held := a.holder[n]
			if !held {
				a.holder[n], a.of[t.ARN] = t.ARN, n
				break
			}
			if ht := f.known[h]; ht.DesiredStatus != "RUNNING" && !waitedFor[n] {
				waitedFor[n], a.waits[t.ARN] = true, n
				break
			}
		}
	}
	return a
}

// replicaView is the assignment of one name, with the facts it came from.
type replicaView struct {
	base  string
	facts replicaFacts
	a     assignment
	fams  []string
}

// replicaView reads the facts of base's replicas: its volumes, the tasks
// their tags name, and the live tasks of fams (plus the volumes' own
// families) that use base with replicas=true. The task asking (also) is
// described with the holders, so a task that ECS's listing does not show
// yet still gets its place.
func (r *Reconciler) replicaView(ctx context.Context, cluster, base string, fams []string, also string) (*replicaView, error) {
	all, err := r.cloud.ClusterVolumes(ctx, cluster)
	if err != nil {
		return nil, err
	}
	f := replicaFacts{known: map[string]cloud.Task{}, azOf: map[string]string{}}
	famSet := map[string]bool{}
	for _, fam := range fams {
		if fam != "" {
			famSet[fam] = true
		}
	}
	var holders []string
	for _, v := range all {
		if v.Tags[TagReplicaOf] != base || v.State == cloud.VolumeDeleting || v.State == cloud.VolumeDeleted {
			continue
		}
		b, n, ok := volspec.ParseReplicaName(v.Tags[cloud.TagVolume])
		if !ok || b != base {
			continue
		}
		rv := replicaVol{ordinal: n, id: v.ID, az: v.AZ, holder: v.Tags[TagReplicaTask]}
		if len(v.Attachments) > 0 {
			rv.at = v.Attachments[0].InstanceID
		}
		f.vols = append(f.vols, rv)
		if rv.holder != "" && !slices.Contains(holders, rv.holder) {
			holders = append(holders, rv.holder)
		}
		for _, fam := range strings.Split(v.Tags[cloud.TagFamilies], ",") {
			if fam != "" {
				famSet[fam] = true
			}
		}
	}
	if also != "" && !slices.Contains(holders, also) {
		holders = append(holders, also)
	}
	if len(holders) > 0 {
		ts, err := r.cloud.Tasks(ctx, cluster, holders)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			f.known[t.ARN] = t
		}
	}
	famList := slices.Sorted(maps.Keys(famSet))
	for _, fam := range famList {
		arns, err := r.cloud.ListTaskARNs(ctx, cluster, cloud.TaskQuery{Family: fam})
		if err != nil {
			return nil, err
		}
		ts, err := r.cloud.Tasks(ctx, cluster, arns)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			f.known[t.ARN] = t
		}
	}
	for _, t := range f.known {
		if !t.Live() {
			continue
		}
		td, err := r.cloud.TaskDefinition(ctx, t.TaskDefinitionARN)
		if errors.Is(err, cloud.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if _, ok := replicaSpec(td, base); !ok {
			continue
		}
		f.needers = append(f.needers, t.ARN)
		az := t.AZ
		if az == "" && t.ContainerInstanceARN != "" {
			ci, err := r.cloud.ContainerInstanceHome(ctx, cluster, t.ContainerInstanceARN)
			if err != nil && !errors.Is(err, cloud.ErrNotFound) {
				return nil, err
			}
			az = ci.AZ
		}
		f.azOf[t.ARN] = az
	}
	sort.Strings(f.needers)
	return &replicaView{base: base, facts: f, a: assign(f), fams: famList}, nil
}

// keysFor: the replica keys a task names for base: the ordinal it holds
// or waits for, and every volume whose tag names it (so that its STOPPED
// event wakes the volume it held, for the task that waits for it).
func (v *replicaView) keysFor(cluster, taskARN string) []Key {
	var ns []int
	if n, ok := v.a.of[taskARN]; ok {
		ns = append(ns, n)
	}
	if n, ok := v.a.waits[taskARN]; ok {
		ns = append(ns, n)
	}
	for _, rv := range v.facts.vols {
		if rv.holder == taskARN {
			ns = append(ns, rv.ordinal)
		}
	}
	slices.Sort(ns)
	var keys []Key
	for _, n := range slices.Compact(ns) {
		keys = append(keys, Key{Cluster: cluster, Volume: volspec.ReplicaName(v.base, n)})
	}
	return keys
}

// replicaKeys names the replica keys of a task of definition td, and a
// reason for each replicated volume tether must refuse. views (nil: none)
// keeps the views read, by name, for the next task of the same call (the
// sweep's).
func (r *Reconciler) replicaKeys(ctx context.Context, cluster string, t cloud.Task, td cloud.TaskDefinition, views map[string]*replicaView) (keys []Key, refused []string, err error) {
	for _, dv := range td.Volumes {
		if !isTetherDriver(dv.Driver) || !isReplicated(dv) {
			continue
		}
		if err := volspec.ValidateReplicaBase(dv.Name); err != nil {
			refused = append(refused, "replicas=true: "+err.Error())
			continue
		}
		view := views[dv.Name]
		if view == nil || !slices.Contains(view.fams, t.Family()) {
			fams := []string{t.Family()}
			if view != nil {
				fams = append(fams, view.fams...)
			}
			if view, err = r.replicaView(ctx, cluster, dv.Name, fams, t.ARN); err != nil {
				return nil, nil, err
			}
			if views != nil {
				views[dv.Name] = view
			}
		}
		keys = append(keys, view.keysFor(cluster, t.ARN)...)
	}
	return keys, refused, nil
}

// replicaUses: for a replica key, whether task t holds its ordinal now
// (as assign says) and the volume's spec. isReplica false: the key is no
// replica of a replicated volume of t's definition.
func (p *pass) replicaUses(ctx context.Context, t cloud.Task, td cloud.TaskDefinition) (spec cloud.DockerVolume, uses, isReplica bool, err error) {
	base, n, ok := volspec.ParseReplicaName(p.key.Volume)
	if !ok {
		return cloud.DockerVolume{}, false, false, nil
	}
	spec, ok = replicaSpec(td, base)
	if !ok {
		return cloud.DockerVolume{}, false, false, nil
	}
	view := p.rep
	if view == nil || view.base != base || !slices.Contains(view.fams, t.Family()) {
		fams := []string{t.Family()}
		if view != nil && view.base == base {
			fams = append(fams, view.fams...)
		}
		if view, err = p.r.replicaView(ctx, p.key.Cluster, base, fams, t.ARN); err != nil {
			return cloud.DockerVolume{}, false, true, err
		}
		p.rep = view
	}
	got, held := view.a.of[t.ARN]
	return spec, held && got == n, true, nil
}

// replicaTags: the tags a replica's new volume is created with, its holder
// among them (the first task that needs it).
func (p *pass) replicaTags(tags map[string]string, w want) {
	base, n, ok := volspec.ParseReplicaName(p.key.Volume)
	if !ok || p.rep == nil || p.rep.base != base || len(w.needers) == 0 {
		return
	}
	tags[TagReplicaOf], tags[TagReplica], tags[TagReplicaTask] = base, strconv.Itoa(n), w.needers[0].task.ARN
}

// claimReplica makes the assignment a fact before anything is attached:
// the key's volume is tagged with the task that needs it, unless it says
// so already. (A volume yet to be created gets the tag with CreateVolume.)
func (p *pass) claimReplica(ctx context.Context, w want) error {
	base, n, ok := volspec.ParseReplicaName(p.key.Volume)
	if !ok || p.rep == nil || p.rep.base != base || len(w.needers) == 0 {
		return nil
	}
	holder := w.needers[0].task.ARN
	vols, err := p.r.cloud.VolumesByKey(ctx, p.key.Cluster, p.key.Volume)
	if err != nil {
		return err
	}
	for _, v := range vols {
		if v.State == cloud.VolumeDeleting || v.State == cloud.VolumeDeleted || v.Tags[TagReplicaTask] == holder {
			continue
		}
		if err := p.fresh("claim replica"); err != nil {
			return err
		}
		p.log.Info("replica claimed", "volumeId", v.ID, "replica", n, "task", holder, "previous", v.Tags[TagReplicaTask])
		if err := p.r.cloud.TagVolume(ctx, v.ID, map[string]string{TagReplicaOf: base, TagReplica: strconv.Itoa(n), TagReplicaTask: holder}); err != nil {
			return err
		}
	}
	return nil
}

// mountPredatesReplica: the replica's last mount on this attachment was
// sent before its new holder t existed, so it was for an earlier task
// here; since then the plugin may have unmounted the filesystem when that
// task's last container stopped. The agent maps a replicated Docker name
// only to a replica mounted on the host, never to one that is merely
// attached (the attachment alone does not say which task it is for), so
// the new holder gets its own mount command (idempotent: an already
// mounted filesystem stays as it is).
func (p *pass) mountPredatesReplica(t need, cmd cloud.Command) bool {
	if _, _, ok := volspec.ParseReplicaName(p.key.Volume); !ok || !isReplicated(t.spec) {
		return false
	}
	return !cmd.Requested.IsZero() && !t.task.CreatedAt.IsZero() && cmd.Requested.Before(t.task.CreatedAt)
}

// Replicated names the volumes of td that are per replica (replicas=true).
// For the tether command.
func Replicated(td cloud.TaskDefinition) []string {
	var out []string
	for _, v := range td.Volumes {
		if isTetherDriver(v.Driver) && isReplicated(v) {
			out = append(out, v.Name)
		}
	}
	return out
}

// ReplicaKeysOf names the replica keys among vols (the cluster's volumes,
// or some of them) that task taskARN of definition td holds or last held:
// those whose tether:replica-task tag names it. For the tether command,
// which shows facts; whether the task holds the replica now is the
// reconciler's (assign).
func ReplicaKeysOf(cluster, taskARN string, td cloud.TaskDefinition, vols []cloud.Volume) []Key {
	bases := Replicated(td)
	var keys []Key
	for _, v := range vols {
		if v.Tags[cloud.TagCluster] != cluster || v.Tags[TagReplicaTask] != taskARN || !slices.Contains(bases, v.Tags[TagReplicaOf]) {
			continue
		}
		if k := (Key{Cluster: cluster, Volume: v.Tags[cloud.TagVolume]}); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// reasonReplicaShare: two replicas of one name on one instance.
const reasonReplicaShare = "replicas-share-instance"

// replicaNeighbour keeps one replica of a name per instance, which is what
// lets the agent map the Docker name to the one replica mounted there:
// before a replica is attached or mounted for task t, no other replica of
// the name may be on t's instance. One held by a task that is to run on
// that instance too means two replicas were placed on one instance: t is
// stopped with a reason (place them with distinctInstance). One that
// nobody holds, whose holder is stopping, or runs elsewhere, is on its way
// out (its own key releases it): t waits for that, bounded like every
// wait (waitOrStop).
func (p *pass) replicaNeighbour(ctx context.Context, t need) (Result, bool, error) {
	base, n, ok := volspec.ParseReplicaName(p.key.Volume)
	if !ok || p.rep == nil || p.rep.base != base || !isReplicated(t.spec) {
		return Result{}, false, nil
	}
	inst := t.instance()
	for _, rv := range p.rep.facts.vols {
		if rv.ordinal == n || rv.at != inst {
			continue
		}
		other := volspec.ReplicaName(base, rv.ordinal)
		if h, held := p.rep.a.holder[rv.ordinal]; held {
			if ht := p.rep.facts.known[h]; ht.DesiredStatus == "RUNNING" && ht.ContainerInstanceARN == t.task.ContainerInstanceARN {
				reason := fmt.Sprintf("replica %s of volume %s is in use on instance %s by task %s; a replicated volume serves one task per instance: place the service's tasks with a distinctInstance constraint",
					other, base, inst, taskID(h))
				p.log.Error("two replicas of one volume on one instance; stopping the task that waits", "other", other, "otherTask", h, "task", t.task.ARN)
				if err := p.failTasks(ctx, []cloud.Task{t.task}, reasonReplicaShare, reason); err != nil {
					return Result{}, true, err
				}
				return done("replicas share an instance"), true, nil
			}
		}
		p.log.Info("another replica of the volume is still on the instance; waiting for it to leave", "other", other, "otherVolumeId", rv.id, "instance", inst)
		res, err := p.waitOrStop(ctx, []need{t}, reasonReplicaShare,
			fmt.Sprintf("replica %s waits for replica %s (%s) to leave instance %s", p.key.Volume, other, rv.id, inst), p.r.t.CommandWait, p.hint)
		return res, true, err
	}
	return Result{}, false, nil
}
