package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/tether-ecs/tether/test/world/ecssim"
)

// workQueues are the queues tether's functions read; settled means empty.
var workQueues = []string{"TaskQueue", "VolumeQueue", "InstanceQueue", "RetryQueue"}

// settle waits, bounded, until the cluster has converged and stayed so for
// longer than a sweep period: every service at its desired count with its
// tasks RUNNING, tether's queues empty, every attachment serving a running
// task. It returns why not when the bound passes.
func (r *run) settle(ctx context.Context) (bool, string) {
	deadline := time.Now().Add(r.cfg.Settle)
	var since time.Time
	why := ""
	nextProgress := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		why = r.unsettled()
		if time.Now().After(nextProgress) {
			nextProgress = time.Now().Add(10 * time.Second)
			fmt.Fprintf(r.log, "chaos: settling: %s\n", orSettled(why))
		}
		if why == "" {
			if since.IsZero() {
				since = time.Now()
			}
			// Longer than the sweep's period (1 minute of world time).
			if time.Since(since) > time.Duration(float64(80*time.Second)*timeScale) {
				return true, ""
			}
		} else {
			since = time.Time{}
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err().Error()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return false, why
}

// unsettled says what is not converged yet ("" when everything is).
func (r *run) unsettled() string {
	sn := r.w.ECS().Snapshot(r.cluster)
	if why := servicesOff(sn, r.sched.svc); why != "" {
		return why
	}
	for _, t := range sn.Tasks {
		if t.LastStatus != "RUNNING" && t.LastStatus != "STOPPED" {
			return fmt.Sprintf("task %s is %s", t.ID, t.LastStatus)
		}
	}
	for _, q := range workQueues {
		st := r.w.Deployment().Queues[q].Stats()
		if n := st.Visible + st.InFlight + st.Delayed; n > 0 {
			return fmt.Sprintf("%s holds %d messages", q, n)
		}
	}
	if why := r.strayAttachment(sn); why != "" {
		return why
	}
	r.watch.mu.Lock()
	defer r.watch.mu.Unlock()
	if n := len(r.watch.pending); n > 0 {
		return fmt.Sprintf("%d RUNNING tasks not verified yet", n)
	}
	return ""
}

// servicesOff says which service is not at its desired count.
func servicesOff(sn ecssim.Snapshot, svcs []*svcModel) string {
	for _, m := range svcs {
		running, other := 0, 0
		for _, t := range sn.ServiceTasks(m.def.name) {
			switch {
			case t.LastStatus == "STOPPED":
			case t.LastStatus == "RUNNING" && t.DesiredStatus == "RUNNING":
				running++
			default:
				other++
			}
		}
		want := int(m.desired)
		if !m.exists {
			want = 0
		}
		if running != want || other > 0 {
			return fmt.Sprintf("service %s has %d RUNNING and %d other live tasks, wants %d", m.def.name, running, other, want)
		}
	}
	return ""
}

// usersOn lists the tether names RUNNING tasks use on each instance.
func (r *run) usersOn(sn ecssim.Snapshot) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, t := range sn.Tasks {
		if t.LastStatus != "RUNNING" {
			continue
		}
		d := r.watch.byDef[t.TaskDefinitionArn]
		if d == nil {
			continue
		}
		if out[t.EC2InstanceID] == nil {
			out[t.EC2InstanceID] = map[string]bool{}
		}
		for _, v := range d.volumes {
			out[t.EC2InstanceID][v.tetherName(t.Arn)] = true
		}
	}
	return out
}

// strayAttachment finds a device on a live host that no RUNNING task there
// uses.
func (r *run) strayAttachment(sn ecssim.Snapshot) string {
	users := r.usersOn(sn)
	for _, in := range r.w.Instances() {
		h, ok := r.w.FakeHost(in.ID)
		if !ok {
			continue
		}
		st := h.State()
		if st.Down {
			continue
		}
		for vol := range st.Devices {
			name := r.watch.nameOf(vol)
			if !users[in.ID][name] {
				return fmt.Sprintf("%s (%s) is attached to %s where no RUNNING task uses it", vol, name, in.ID)
			}
		}
	}
	return ""
}

// finalChecks looks at the settled world: tasks, services, every tether
// volume EC2 still has, the dead-letter queues.
func (r *run) finalChecks(ctx context.Context, rep *Report) {
	r.watch.poll()
	sn := r.w.ECS().Snapshot(r.cluster)
	for _, t := range sn.Tasks {
		switch {
		case t.LastStatus != "RUNNING" && t.LastStatus != "STOPPED":
			r.watch.violate("task-state", "", "task %s of %s ended %s/%s, neither RUNNING nor STOPPED", t.Arn, t.Service, t.LastStatus, t.DesiredStatus)
		case t.LastStatus == "STOPPED" && strings.TrimSpace(t.StoppedReason) == "":
			r.watch.violate("task-state", "", "task %s of %s STOPPED (%s) without a stoppedReason", t.Arn, t.Service, t.StopCode)
		case t.LastStatus == "STOPPED" && r.watch.neverRan(t.Arn) && !strings.HasPrefix(t.StoppedReason, "chaos:"):
			rep.TaskFailures[failureKind(t.StoppedReason)]++
			rep.Outcomes["tasks stopped before they ran: "+stopClass(t.StoppedReason, t.StopCode)]++
		}
	}
	if why := servicesOff(sn, r.sched.svc); why != "" {
		r.watch.violate("service-count", "", "%s", why)
	}
	r.watch.mu.Lock()
	for arn := range r.watch.pending {
		r.watch.violateLocked("no-data", "", "task %s is RUNNING but its volumes' generations were never seen", arn)
	}
	r.watch.mu.Unlock()
	r.checkVolumes(ctx, sn)
	r.checkDeadLetters(rep)
}

// checkVolumes reads every volume tagged with the cluster (one
// DescribeVolumes, after the report's counters were taken): task-scoped
// volumes of stopped tasks are gone, shared volumes are attached only
// where a RUNNING task uses them, one volume per shared name.
func (r *run) checkVolumes(ctx context.Context, sn ecssim.Snapshot) {
	users := r.usersOn(sn)
	live := map[string]bool{}
	for _, t := range sn.Tasks {
		if t.LastStatus != "STOPPED" {
			live[t.Arn] = true
		}
	}
	instState := map[string]string{}
	for _, in := range sn.Instances {
		instState[in.EC2InstanceID] = in.Status
	}
	c := ec2.NewFromConfig(r.w.AWSConfig())
	p := ec2.NewDescribeVolumesPaginator(c, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:tether:cluster"), Values: []string{r.cluster}}}})
	perName := map[string][]string{}
	all := map[string]ec2types.Volume{}
	for p.HasMorePages() {
		var page *ec2.DescribeVolumesOutput
		err := retrying(ctx, "describe volumes", func(ctx context.Context) error {
			var err error
			page, err = p.NextPage(ctx)
			return err
		})
		if err != nil {
			r.watch.violate("world", "", "final DescribeVolumes: %v", err)
			return
		}
		for _, v := range page.Volumes {
			id, tags := aws.ToString(v.VolumeId), map[string]string{}
			for _, t := range v.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			name := tags["tether:volume"]
			all[id] = v
			if to := tags["tether:moved-to"]; to != "" {
				// An AZ move's old volume: kept by design, never attached again.
				for _, a := range v.Attachments {
					r.watch.violate("leak", id, "%s, moved to %s (%s), is %s to %s", id, to, tags["tether:moved-name"], a.State, aws.ToString(a.InstanceId))
				}
				continue
			}
			if tags["tether:scope"] == "task" {
				if !live[tags["tether:task"]] {
					r.watch.violate("leak", id, "task-scoped volume %s (%s) of stopped task %s is still there (%s)", id, name, tags["tether:task"], v.State)
				}
				continue
			}
			perName[name] = append(perName[name], id)
			for _, a := range v.Attachments {
				inst := aws.ToString(a.InstanceId)
				if !users[inst][name] {
					r.watch.violate("leak", id, "shared volume %s (%s) is %s to %s (container instance %s) where no RUNNING task uses it",
						id, name, a.State, inst, orNone(instState[inst]))
				}
			}
		}
	}
	for name, ids := range perName {
		if len(ids) > 1 {
			slices.Sort(ids)
			r.watch.violate("duplicate-volume", ids[1], "shared volume %s has %d EBS volumes: %v", name, len(ids), ids)
		}
	}
	r.checkMoves(ctx, c, all)
	r.checkChanges(all, perName)
}

// stopClass groups the reasons of tasks that never ran: tether's words for
// a volume a live host holds (the wedged hosts' outcome), tether's other
// reasons, the plugin's own Mount timeout (less precise), ECS's.
func stopClass(reason, code string) string {
	switch {
	case strings.Contains(reason, "never force-detaches"):
		return "tether: waited for a live host that held the volume"
	case strings.Contains(reason, "not formatting"):
		return "tether: the agent refused a device holding data without a filesystem (torn superblock)"
	case strings.HasPrefix(reason, "tether:"):
		return "tether: other reasons"
	case strings.Contains(reason, "VolumeDriver.Mount"):
		return "the plugin's Mount wait ran out"
	case code == ecssim.StopTaskFailedToStart:
		return "failed to start: other"
	}
	return "stopped by ECS (" + code + ")"
}

func orNone(s string) string {
	if s == "" {
		return "deregistered"
	}
	return s
}

func orSettled(why string) string {
	if why == "" {
		return "settled"
	}
	return why
}
