package chaos

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
)

// volumeChanges are the grows and AZ moves the schedule asked for, for the
// final checks.
type volumeChanges struct {
	grown map[string]int      // shared volume name -> the size (GiB) its service's newest revision asks
	moved map[string]azChange // shared volume name -> the move its service's newest revision asks
}

type azChange struct{ from, to string }

// chooseVolumeChange draws a grow or an AZ move of a running service with
// a shared volume, each at most once per service: a new task definition
// revision, and the service updated to it (ECS replaces its task, the old
// one stopping first).
func (s *schedule) chooseVolumeChange(ctx context.Context, kind OpKind) (string, func() error) {
	if s.changes.grown == nil {
		s.changes = volumeChanges{grown: map[string]int{}, moved: map[string]azChange{}}
	}
	sv := s.pickService(func(m *svcModel) bool {
		vd, ok := m.def.sharedVolume()
		if !ok || !m.exists || m.desired == 0 || m.def.az == "" {
			return false
		}
		if kind == OpGrow {
			_, done := s.changes.grown[vd.name]
			return !done
		}
		_, done := s.changes.moved[vd.name]
		return !done
	})
	if sv == nil {
		return "", nil
	}
	rev := sv.def.revision()
	vi := slices.IndexFunc(rev.volumes, func(v volumeDef) bool { return v.shared })
	vd := &rev.volumes[vi]
	var target string
	switch kind {
	case OpGrow:
		size, err := strconv.Atoi(vd.opts["size"])
		if err != nil {
			size = 1 // volspec's default... the plan always sets it
		}
		size += 1 + s.rng.IntN(3)
		vd.opts["size"] = strconv.Itoa(size)
		target = fmt.Sprintf("%s %s to %d GiB", sv.def.name, vd.name, size)
	case OpAZMove:
		var azs []string
		for _, in := range s.inst {
			if in.az != sv.def.az && in.state == instActive && !slices.Contains(azs, in.az) {
				azs = append(azs, in.az)
			}
		}
		if len(azs) == 0 {
			return "", nil
		}
		slices.Sort(azs)
		rev.az = azs[s.rng.IntN(len(azs))]
		vd.opts["azmove"] = "snapshot"
		target = fmt.Sprintf("%s %s from %s to %s", sv.def.name, vd.name, sv.def.az, rev.az)
	}
	return target, func() error {
		if err := retrying(ctx, "register "+rev.name, func(ctx context.Context) error { return rev.register(ctx, s.ecs) }); err != nil {
			return err
		}
		s.watch.addDef(rev)
		err := retrying(ctx, "update "+rev.name, func(ctx context.Context) error {
			_, err := s.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{Cluster: aws.String(s.watch.cluster), Service: aws.String(rev.name),
				TaskDefinition: aws.String(rev.taskDef)})
			return err
		})
		if err != nil {
			return err
		}
		old := sv.def
		sv.def = rev
		if kind == OpGrow {
			s.changes.grown[vd.name], _ = strconv.Atoi(vd.opts["size"])
		} else {
			s.changes.moved[vd.name] = azChange{from: old.az, to: rev.az}
		}
		return nil
	}
}

// tagsOf reads an EC2 volume's tags.
func tagsOf(v ec2types.Volume) map[string]string {
	out := map[string]string{}
	for _, t := range v.Tags {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}

// checkMoves accounts for every AZ move in the settled world (all: every
// volume tagged with the cluster): each old volume (tether:moved-to) is
// kept and named by exactly one volume made from it (tether:moved-from,
// which must be the world's fact: its contents came from that volume's
// snapshot); each move has exactly one move snapshot (tether:move-of), the
// one the new volume was made from; no other move snapshot is left.
func (r *run) checkMoves(ctx context.Context, c *ec2.Client, all map[string]ec2types.Volume) {
	movedFrom := map[string][]string{} // old -> new volumes naming it
	for id, v := range all {
		from := tagsOf(v)["tether:moved-from"]
		if from == "" {
			continue
		}
		movedFrom[from] = append(movedFrom[from], id)
		if ds, ok := r.w.Disks().Volume(id); ok && ds.RestoredFrom != from {
			r.watch.violate("az-move", id, "%s is tagged tether:moved-from=%s but its contents came from %q (snapshot %q)", id, from, ds.RestoredFrom, ds.FromSnapshot)
		}
		if _, ok := all[from]; !ok {
			r.watch.violate("az-move", id, "%s was moved from %s, which is gone: tether keeps a moved volume", id, from)
		}
	}
	var snaps []ec2types.Snapshot
	p := ec2.NewDescribeSnapshotsPaginator(c, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("tag:tether:cluster"), Values: []string{r.cluster}}, {Name: aws.String("tag-key"), Values: []string{"tether:move-of"}}}})
	for p.HasMorePages() {
		var page *ec2.DescribeSnapshotsOutput
		err := retrying(ctx, "describe snapshots", func(ctx context.Context) error {
			var err error
			page, err = p.NextPage(ctx)
			return err
		})
		if err != nil {
			r.watch.violate("world", "", "final DescribeSnapshots: %v", err)
			return
		}
		snaps = append(snaps, page.Snapshots...)
	}
	snapsOf := map[string][]string{} // old volume -> its move snapshots
	for _, sn := range snaps {
		id, of := aws.ToString(sn.SnapshotId), ""
		for _, t := range sn.Tags {
			if aws.ToString(t.Key) == "tether:move-of" {
				of = aws.ToString(t.Value)
			}
		}
		snapsOf[of] = append(snapsOf[of], id)
		if len(movedFrom[of]) == 0 {
			r.watch.violate("leak", of, "move snapshot %s of %s (%s) is not accounted for: no volume was moved from it", id, of, sn.State)
		}
	}
	for old, news := range movedFrom {
		slices.Sort(news)
		if len(news) > 1 {
			r.watch.violate("az-move", old, "%s was moved to %d volumes: %v", old, len(news), news)
		}
		ov := all[old]
		if to := tagsOf(ov)["tether:moved-to"]; to != news[0] {
			r.watch.violate("az-move", old, "%s is tagged tether:moved-to=%q, but %s was moved from it", old, to, news[0])
		}
		if len(snapsOf[old]) != 1 {
			r.watch.violate("az-move", old, "%s was moved with %d move snapshots %v: want exactly one per move", old, len(snapsOf[old]), snapsOf[old])
		} else if got := aws.ToString(all[news[0]].SnapshotId); got != snapsOf[old][0] {
			r.watch.violate("az-move", news[0], "%s was made from %q, not from its move's snapshot %s", news[0], got, snapsOf[old][0])
		}
		r.watch.count("AZ moves accounted for (old volume kept, one move snapshot)")
	}
}

// checkChanges: each grow and AZ move the schedule asked of a service that
// runs at the end is in force: the name's volume is of the size its
// revision asks (and so is its filesystem, when the fake host measured
// it), in the AZ its revision is placed in.
func (r *run) checkChanges(all map[string]ec2types.Volume, perName map[string][]string) {
	ch := r.sched.changes
	for _, m := range r.sched.svc {
		vd, ok := m.def.sharedVolume()
		if !ok {
			continue
		}
		want, grown := ch.grown[vd.name]
		mv, moved := ch.moved[vd.name]
		if !grown && !moved {
			continue
		}
		if !m.exists || m.desired == 0 || len(perName[vd.name]) != 1 {
			r.watch.count("grows or AZ moves not checked: the service does not run at the end")
			continue
		}
		id := perName[vd.name][0]
		v := all[id]
		if grown {
			if got := int(aws.ToInt32(v.Size)); got < want {
				r.watch.violate("grow", id, "%s (%s) is %d GiB after settling; its service's revision asks %d", id, vd.name, got, want)
			} else if ds, ok := r.w.Disks().Volume(id); ok && ds.FSBytes > 0 && ds.FSBytes < int64(want)<<30 {
				r.watch.violate("grow", id, "%s (%s) is %d GiB but its filesystem spans %d bytes: not grown", id, vd.name, got, ds.FSBytes)
			} else {
				r.watch.count("volumes grown online (EC2 size and filesystem)")
			}
		}
		if moved {
			az := aws.ToString(v.AvailabilityZone)
			switch {
			case az != mv.to:
				r.watch.violate("az-move", id, "%s (%s) is in %s after settling; its service was moved from %s to %s", id, vd.name, az, mv.from, mv.to)
			case tagsOf(v)["tether:moved-from"] == "":
				r.watch.violate("az-move", id, "%s (%s) is in %s but was not moved there: made empty, not from the old volume's snapshot", id, vd.name, az)
			default:
				r.watch.count("services moved to another AZ, their volume with them")
			}
		}
	}
}
