package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/smithy-go"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/internal/volspec"
)

var (
	taskARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:task/([a-zA-Z0-9_-]{1,255})/([a-f0-9]{32}|[a-zA-Z0-9-]{1,64})$`)
	taskIDPattern  = regexp.MustCompile(`^[a-f0-9]{32}$`)
)

// printJSON writes v as one JSON document on stdout.
func (c *cmd) printJSON(v any) error {
	enc := json.NewEncoder(c.io.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress tells the operator what a wait is at (stderr, also with --json).
func (c *cmd) progress(format string, args ...any) {
	fmt.Fprintf(c.io.Stderr, "tether: "+format+"\n", args...)
}

// resolveVolume finds the key a VOLUME argument names: an EBS volume id
// (tether's, by its tags) or a tether volume name (in co.cluster, or in the
// one cluster that has a volume of that name). vol is the volume when an id
// was given.
func (c *cmd) resolveVolume(ctx context.Context, arg string, co *common) (reconcile.Key, *cloud.Volume, error) {
	if volspec.ValidateVolumeID(arg) == nil {
		v, err := c.deps.Cloud.VolumeByID(ctx, arg)
		if errors.Is(err, cloud.ErrNotFound) {
			return reconcile.Key{}, nil, notFound("no EBS volume %s", arg)
		}
		if err != nil {
			return reconcile.Key{}, nil, err
		}
		cluster, name := v.Tags[cloud.TagCluster], v.Tags[cloud.TagVolume]
		if cluster == "" || volspec.ValidateName(name) != nil {
			return reconcile.Key{}, &v, refused("%s is not tether's (no tether:cluster and tether:volume tags): `tether adopt %s --name NAME` claims it", arg, arg)
		}
		if co.cluster != "" && co.cluster != cluster {
			return reconcile.Key{}, nil, refused("%s is tether volume %s of cluster %s, not of %s", arg, name, cluster, co.cluster)
		}
		co.cluster = cluster
		return reconcile.Key{Cluster: cluster, Volume: name}, &v, nil
	}
	if err := volspec.ValidateName(arg); err != nil {
		return reconcile.Key{}, nil, usageErr("%q is neither an EBS volume id nor a tether volume name: %v", arg, err)
	}
	if co.cluster != "" {
		return reconcile.Key{Cluster: co.cluster, Volume: arg}, nil, nil
	}
	all, err := c.deps.Cloud.TetherVolumes(ctx)
	if err != nil {
		return reconcile.Key{}, nil, err
	}
	var clusters []string
	for _, v := range all {
		if v.Tags[cloud.TagVolume] == arg && !slices.Contains(clusters, v.Tags[cloud.TagCluster]) {
			clusters = append(clusters, v.Tags[cloud.TagCluster])
		}
	}
	switch len(clusters) {
	case 0:
		return reconcile.Key{}, nil, notFound("no tether volume named %s in any cluster (give --cluster to look at one that has none yet)", arg)
	case 1:
		co.cluster = clusters[0]
		return reconcile.Key{Cluster: clusters[0], Volume: arg}, nil, nil
	}
	slices.Sort(clusters)
	return reconcile.Key{}, nil, usageErr("clusters %v each have a tether volume named %s: give --cluster", clusters, arg)
}

// explain: `tether explain TASK|VOLUME`.
func (c *cmd) explain(ctx context.Context, args []string) error {
	var co common
	fs := c.verbFlags("explain", &co)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("explain: want one TASK or VOLUME")
	}
	if err := co.check(false); err != nil {
		return err
	}
	arg := pos[0]
	out := struct {
		Task    *TaskLine     `json:"task,omitempty"`
		Volumes []Explanation `json:"volumes"`
	}{Volumes: []Explanation{}}
	var keys []reconcile.Key
	var vol *cloud.Volume
	var task cloud.Task
	if m := taskARNPattern.FindStringSubmatch(arg); m != nil || taskIDPattern.MatchString(arg) {
		if m != nil {
			if co.cluster != "" && co.cluster != m[1] {
				return usageErr("task %s is of cluster %s, not %s", arg, m[1], co.cluster)
			}
			co.cluster = m[1]
		}
		if err := co.check(true); err != nil {
			return err
		}
		ts, err := c.deps.Cloud.Tasks(ctx, co.cluster, []string{arg})
		if err != nil {
			return err
		}
		if len(ts) == 0 {
			return notFound("no task %s in cluster %s", arg, co.cluster)
		}
		td, err := c.deps.Cloud.TaskDefinition(ctx, ts[0].TaskDefinitionARN)
		if err != nil {
			return err
		}
		keys = reconcile.TaskKeys(co.cluster, ts[0].ARN, td)
		if len(reconcile.Replicated(td)) > 0 {
			vols, err := c.deps.Cloud.ClusterVolumes(ctx, co.cluster)
			if err != nil {
				return err
			}
			keys = append(keys, reconcile.ReplicaKeysOf(co.cluster, ts[0].ARN, td, vols)...)
		}
		task = ts[0]
		e := explainer{f: &facts{}}
		line := e.taskLine(task)
		out.Task = &line
		if len(keys) == 0 {
			if c.json {
				return c.printJSON(out)
			}
			fmt.Fprintf(c.io.Stdout, "task %s (%s) uses no tether volume\n", cloud.TaskID(ts[0].ARN), ts[0].Family())
			return nil
		}
	} else {
		key, v, err := c.resolveVolume(ctx, arg, &co)
		var e *exitError
		if v != nil && errors.As(err, &e) && e.code == ExitRefused {
			return c.explainUnowned(*v)
		}
		if err != nil {
			return err
		}
		keys, vol = []reconcile.Key{key}, v
	}
	for _, k := range keys {
		f, err := c.gather(ctx, k, co, vol)
		if err != nil {
			return err
		}
		out.Volumes = append(out.Volumes, explain(f))
		if out.Task != nil && out.Task.Instance == "" {
			out.Task.Instance = f.instanceOfTask(task)
		}
	}
	if c.json {
		return c.printJSON(out)
	}
	if out.Task != nil {
		fmt.Fprintf(c.io.Stdout, "task %s (%s): %s, desired %s, on %s\n\n", cloud.TaskID(out.Task.Task), out.Task.Family, out.Task.LastStatus, out.Task.DesiredStatus, dash(out.Task.Instance))
	}
	for i, x := range out.Volumes {
		if i > 0 {
			fmt.Fprintln(c.io.Stdout)
		}
		writeExplanation(c.io.Stdout, x)
	}
	return nil
}

// explainUnowned: an EBS volume id that is not tether's.
func (c *cmd) explainUnowned(v cloud.Volume) error {
	x := Explanation{Volume: v.Tags[cloud.TagName], VolumeID: v.ID, State: v.State, AZ: v.AZ, SizeGiB: v.SizeGiB, Type: v.Type,
		Tasks: []TaskLine{}, Instances: []instance{}, Steps: []Step{{State: stepFailed, What: "serve " + v.ID, Detail: "not tether's: it has no tether:cluster tag"}},
		Advice: fmt.Sprintf("claim it: tether adopt %s --name %s --cluster CLUSTER", v.ID, dash(v.Tags[cloud.TagName]))}
	if len(v.Attachments) > 0 {
		x.Instance, x.Attachment = v.Attachments[0].InstanceID, v.Attachments[0].State
	}
	if c.json {
		return c.printJSON(struct {
			Volumes []Explanation `json:"volumes"`
		}{[]Explanation{x}})
	}
	writeExplanation(c.io.Stdout, x)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeExplanation(w io.Writer, x Explanation) {
	head := x.Volume
	if x.VolumeID != "" {
		head += " (" + x.VolumeID + ")"
	}
	if x.Cluster != "" {
		head += ", cluster " + x.Cluster
	}
	fmt.Fprintln(w, head)
	if x.VolumeID != "" {
		where := "not attached"
		if x.Instance != "" {
			where = x.Attachment + " to " + x.Instance
		}
		fmt.Fprintf(w, "  %s, %d GiB %s in %s, %s, %s\n", dash(x.Scope), x.SizeGiB, dash(x.Type), dash(x.AZ), dash(x.State), where)
	}
	if len(x.Tasks) > 0 {
		fmt.Fprintln(w, "tasks:")
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		for _, t := range x.Tasks {
			status := t.LastStatus
			if t.DesiredStatus != t.LastStatus {
				status += " (desired " + t.DesiredStatus + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\ton %s\t%s\n", cloud.TaskID(t.Task), t.Family, status, dash(t.Instance), t.StoppedReason)
		}
		tw.Flush()
	}
	if len(x.Steps) > 0 {
		fmt.Fprintln(w, "steps:")
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		for _, s := range x.Steps {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.State, s.What, s.Detail)
		}
		tw.Flush()
	}
	if x.WaitingFor != "" {
		fmt.Fprintf(w, "waiting for: %s\n", x.WaitingFor)
	} else {
		fmt.Fprintln(w, "waiting for: nothing")
	}
	if x.Advice != "" {
		fmt.Fprintf(w, "advice: %s\n", x.Advice)
	}
}

// VolumeLine is one row of `tether volumes`.
type VolumeLine struct {
	Name        string    `json:"name"`
	VolumeID    string    `json:"volumeId"`
	Cluster     string    `json:"cluster"`
	Scope       string    `json:"scope"`
	State       string    `json:"state"`
	AZ          string    `json:"az"`
	Instance    string    `json:"instance,omitempty"`
	Attachment  string    `json:"attachment,omitempty"`
	Task        string    `json:"task,omitempty"`       // the task using it (started) or waiting for it
	TaskStatus  string    `json:"taskStatus,omitempty"` // that task's last status
	Waiting     []string  `json:"waiting,omitempty"`    // further tasks waiting for it
	SizeGiB     int32     `json:"sizeGiB"`
	Type        string    `json:"type"`
	Created     time.Time `json:"createdAt"`
	Adopted     string    `json:"adoptedAt,omitempty"`
	MovedTo     string    `json:"movedTo,omitempty"` // moved to another AZ as this volume (driverOpt azmove); kept, no longer the name's
	LastHandoff *Handoff  `json:"lastHandoff,omitempty"`

	// DeletableFrom: when a moved volume may be deleted (driverOpt
	// azmove-delete-after), by the first sweep that then finds the volume
	// it was moved to in use; zero: kept.
	DeletableFrom time.Time `json:"deletableFrom,omitzero"`
}

// Handoff is the volume's last move, as tether's SSM commands record it:
// from the unmount tether sent on the instance it left to the end of the
// mount on the one it went to.
type Handoff struct {
	From     string    `json:"from,omitempty"` // "" for the first mount
	To       string    `json:"to"`
	Released time.Time `json:"releasedAt,omitzero"`
	Mounted  time.Time `json:"mountedAt"`
	Seconds  float64   `json:"seconds,omitempty"` // how long it took (when From is known)
}

// volumes: `tether volumes [--cluster C]`.
func (c *cmd) volumes(ctx context.Context, args []string) error {
	var co common
	fs := c.verbFlags("volumes", &co)
	history := fs.Duration("history", historyDefault, "how far back to look for each volume's last handoff (SSM keeps 30 days)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("volumes takes no arguments (did you mean `tether explain %s`?)", pos[0])
	}
	if err := co.check(false); err != nil {
		return err
	}
	if *history <= 0 || *history > 30*24*time.Hour {
		return usageErr("--history %s: want more than 0 and at most 720h", *history)
	}
	var vols []cloud.Volume
	if co.cluster != "" {
		vols, err = c.deps.Cloud.ClusterVolumes(ctx, co.cluster)
	} else {
		vols, err = c.deps.Cloud.TetherVolumes(ctx)
	}
	if err != nil {
		return err
	}
	vols = slices.DeleteFunc(vols, func(v cloud.Volume) bool { return v.State == cloud.VolumeDeleted })
	lines := make([]VolumeLine, 0, len(vols))
	byCluster := map[string][]int{}
	for _, v := range vols {
		l := VolumeLine{Name: v.Tags[cloud.TagVolume], VolumeID: v.ID, Cluster: v.Tags[cloud.TagCluster], Scope: v.Tags[cloud.TagScope],
			State: v.State, AZ: v.AZ, SizeGiB: v.SizeGiB, Type: v.Type, Created: v.CreateTime, Adopted: v.Tags[cloud.TagAdopted]}
		if len(v.Attachments) > 0 {
			l.Instance, l.Attachment = v.Attachments[0].InstanceID, v.Attachments[0].State
		}
		if to := v.Tags[cloud.TagMovedTo]; to != "" {
			l.Name, l.MovedTo = v.Tags[cloud.TagMovedName], to
			// Zero when kept (no delay asked, or a tag not valid).
			l.DeletableFrom, _ = reconcile.MovedDeletableFrom(v.Tags)
			lines = append(lines, l) // no task of the name uses it any more
			continue
		}
		byCluster[l.Cluster] = append(byCluster[l.Cluster], len(lines))
		lines = append(lines, l)
	}
	for _, cl := range slices.Sorted(maps.Keys(byCluster)) {
		if err := c.tasksOfVolumes(ctx, cl, lines, byCluster[cl]); err != nil {
			return err
		}
	}
	if err := c.handoffs(ctx, co, lines, *history); err != nil {
		return err
	}
	slices.SortFunc(lines, func(a, b VolumeLine) int {
		return cmpStrings(a.Cluster+"\x00"+a.Name+"\x00"+a.VolumeID, b.Cluster+"\x00"+b.Name+"\x00"+b.VolumeID)
	})
	if c.json {
		return c.printJSON(struct {
			Volumes []VolumeLine `json:"volumes"`
		}{lines})
	}
	tw := tabwriter.NewWriter(c.io.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVOLUME\tCLUSTER\tSCOPE\tSTATE\tAZ\tINSTANCE\tTASK\tSIZE\tTYPE\tLAST HANDOFF\tTOOK")
	for _, l := range lines {
		task := "-"
		if l.Task != "" {
			task = cloud.TaskID(l.Task) + " " + l.TaskStatus
		}
		last, took := "-", "-"
		if h := l.LastHandoff; h != nil {
			last = h.Mounted.UTC().Format(time.RFC3339) + " " + h.From + "->" + h.To
			if h.From == "" {
				last = h.Mounted.UTC().Format(time.RFC3339) + " first mount on " + h.To
			}
			if h.Seconds > 0 {
				took = fmt.Sprintf("%.1fs", h.Seconds)
			}
		}
		state := l.State
		if l.MovedTo != "" {
			state += " (moved to " + l.MovedTo + ")"
			if !l.DeletableFrom.IsZero() {
				state += " (deleted from " + l.DeletableFrom.UTC().Format(time.RFC3339) + " once that one is in use)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d GiB\t%s\t%s\t%s\n", l.Name, l.VolumeID, l.Cluster, l.Scope, state, l.AZ,
			dash(l.Instance), task, l.SizeGiB, l.Type, last, took)
	}
	return tw.Flush()
}

func cmpStrings(a, b string) int { return strings.Compare(a, b) }

// clusterGone: ECS does not know the cluster (ClusterNotFoundException).
func clusterGone(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "ClusterNotFoundException"
}

// tasksOfVolumes names, for the volumes at idx (of one cluster), the task
// that uses each (started) or else the oldest waiting for it.
func (c *cmd) tasksOfVolumes(ctx context.Context, cluster string, lines []VolumeLine, idx []int) error {
	live, err := c.deps.Cloud.LiveTasks(ctx, cluster)
	if clusterGone(err) {
		return nil // the volumes of a cluster ECS no longer knows: no task uses them
	}
	if err != nil {
		return err
	}
	byName := map[string][]cloud.Task{}
	var vols []cloud.Volume // read once, if a task has per-replica volumes
	for _, t := range live {
		td, err := c.deps.Cloud.TaskDefinition(ctx, t.TaskDefinitionARN)
		if errors.Is(err, cloud.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		keys := reconcile.TaskKeys(cluster, t.ARN, td)
		if len(reconcile.Replicated(td)) > 0 {
			if vols == nil {
				if vols, err = c.deps.Cloud.ClusterVolumes(ctx, cluster); err != nil {
					return err
				}
			}
			keys = append(keys, reconcile.ReplicaKeysOf(cluster, t.ARN, td, vols)...)
		}
		for _, k := range keys {
			byName[k.Volume] = append(byName[k.Volume], t)
		}
	}
	for _, i := range idx {
		ts := byName[lines[i].Name]
		slices.SortStableFunc(ts, func(a, b cloud.Task) int {
			if sa, sb := started(a), started(b); sa != sb {
				if sa {
					return -1
				}
				return 1
			}
			return a.CreatedAt.Compare(b.CreatedAt)
		})
		for j, t := range ts {
			if j == 0 {
				lines[i].Task, lines[i].TaskStatus = t.ARN, t.LastStatus
				continue
			}
			lines[i].Waiting = append(lines[i].Waiting, t.ARN)
		}
	}
	return nil
}

// handoffs finds each volume's last move in tether's SSM commands: the
// newest successful mount whose previous successful mount was on another
// instance, and the unmount tether sent there in between (else the first
// mount seen).
func (c *cmd) handoffs(ctx context.Context, co common, lines []VolumeLine, history time.Duration) error {
	if len(lines) == 0 {
		return nil
	}
	mountDoc, unmountDoc := co.documents()
	after := c.deps.Now().Add(-history)
	mounts, err := c.deps.Cloud.DocumentCommands(ctx, mountDoc, after, maxHandoffCmds)
	if err != nil {
		return err
	}
	unmounts, err := c.deps.Cloud.DocumentCommands(ctx, unmountDoc, after, maxHandoffCmds)
	if err != nil {
		return err
	}
	for i := range lines {
		l := &lines[i]
		var ok []cloud.Command // this volume's successful mounts, newest first
		for _, m := range mounts {
			if m.Params[agentproto.ParamVolumeID] == l.VolumeID && m.Status == cloud.CommandSucceeded && m.InstanceID != "" {
				ok = append(ok, m)
			}
		}
		if len(ok) == 0 {
			continue
		}
		to, from := ok[len(ok)-1], cloud.Command{} // the first mount seen, unless a move is found
		for j := 0; j+1 < len(ok); j++ {
			if ok[j].InstanceID != ok[j+1].InstanceID {
				to, from = ok[j], ok[j+1]
				break
			}
		}
		h := &Handoff{To: to.InstanceID, Mounted: to.Requested}
		if full, err := c.deps.Cloud.Command(ctx, to.ID, to.InstanceID, agentproto.StepMount); err == nil && !full.Ended.IsZero() {
			h.Mounted = full.Ended
		} else if err != nil && !errors.Is(err, cloud.ErrNotFound) {
			return err
		}
		if from.ID != "" {
			h.From = from.InstanceID
			for _, u := range unmounts {
				if _, its := u.ForVolume(l.VolumeID); its && u.InstanceID == from.InstanceID &&
					u.Requested.After(from.Requested) && u.Requested.Before(to.Requested) {
					h.Released = u.Requested // the newest such: the release that let it go
					break
				}
			}
			if !h.Released.IsZero() {
				h.Seconds = h.Mounted.Sub(h.Released).Round(100 * time.Millisecond).Seconds()
			}
		}
		l.LastHandoff = h
	}
	return nil
}
