package reconcile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/tether-ecs/tether/functions/internal/cloud"
	"github.com/tether-ecs/tether/internal/volspec"
)

// create makes the key's volume in the AZ of the task that needs it.
//
// Idempotency: the ClientToken is a hash of the key (and task, for task
// scope) and a generation number. Every reconciler probes generations from
// 0 upwards and stops at the first token that still creates (or returns the
// volume it created), so concurrent or repeated passes land on the same
// token and EC2 creates one volume. A generation is left behind only on
// evidence that its token can no longer create: its volume is gone (EC2
// deleted it, e.g. an unusable KMS key), or EC2 keeps refusing the token
// (IdempotentParameterMismatch) while no volume with the key's tags
// exists, seen twice at least BurnConfirm apart (so a create racing in
// from another reconciler becomes visible first).
func (p *pass) create(ctx context.Context, w want, dying *cloud.Volume) (Result, error) {
	t := w.needers[0]
	spec := t.spec
	_, _, taskScoped := parseTaskVolumeName(p.key.Volume)
	if !taskScoped && (!spec.Autoprovision || p.hint.Step != stepCreate) {
		// Before the first CreateVolume (and always without autoprovision):
		// a volume with the name that tether does not own is the user's
		// data, never to be shadowed by a new, empty one.
		if res, ok, err := p.unowned(ctx, w); ok || err != nil {
			return res, err
		}
		if !spec.Autoprovision {
			return p.missing(ctx, w)
		}
	}
	opts, err := volspec.ParseDriverOptsWith(spec.DriverOpts, p.r.defaults)
	if err != nil {
		p.log.Error("driverOpts refused; nothing created", "task", t.task.ARN, "error", err)
		if err := p.failNeeders(ctx, w.needers, reasonInvalidVolume, fmt.Sprintf("volume %s: %v", p.key.Volume, err)); err != nil {
			return Result{}, err
		}
		return done("invalid driverOpts"), nil
	}
	az := t.az()
	if az == "" {
		in, err := p.r.cloud.Instance(ctx, t.instance())
		if err != nil {
			return Result{}, err
		}
		az = in.AZ
	}
	taskARN := ""
	if taskScoped {
		taskARN = t.task.ARN
	}
	req := cloud.CreateVolumeRequest{
		AZ: az, SizeGiB: opts.SizeGiB, Type: opts.VolumeType, IOPS: opts.IOPS, Throughput: opts.Throughput,
		Encrypted: opts.Encrypted, KMSKeyID: opts.KMSKeyID, SnapshotID: opts.SnapshotID,
		Tags: p.createTags(taskARN, t.task.Family()),
	}
	p.replicaTags(req.Tags, w)
	if opts.SnapshotID == "" {
		// Created empty: the first mount may format it (agentproto.ParamFormatIfBlank).
		req.Tags[cloud.TagBlank] = "true"
	}
	if opts.Snapshots == volspec.SnapshotsScheduled {
		req.Tags[cloud.TagSnapshots] = p.key.Cluster // the stack's DLM policy (SnapshotCron)
	}
	if opts.SnapshotBeforeDelete && taskScoped {
		// On the volume, for the pass that deletes it when its task is
		// gone (ECS may no longer know the task definition by then).
		req.Tags[cloud.TagSnapshotFirst] = "true"
	}
	h := p.hint
	if h.Step != stepCreate {
		h = hint{Step: stepCreate}
	}
	if h.Volume != "" {
		// A previous pass created h.Volume, and no volume has the key's tags.
		// Either EC2 does not list it yet (eventual consistency, seconds) or
		// EC2 deleted it again: only the latter spends its token.
		if p.now.Sub(fromMS(h.At)) < p.r.t.CreateSettle && (dying == nil || dying.ID != h.Volume) {
			return p.retry(p.r.t.CreateWait, h, "waiting for created volume %s to show", h.Volume), nil
		}
		if dying != nil && dying.ID == h.Volume || p.vanished(ctx, h.Volume) {
			return p.vanishedVolume(ctx, w, h, opts)
		}
	}
	if err := p.fresh("create"); err != nil {
		return Result{}, err
	}
	for gen := 0; gen < p.r.maxGen; gen++ {
		req.Token = clientToken(p.key, taskARN, gen)
		log := p.log.With("task", t.task.ARN, "instance", t.instance(), "generation", gen)
		v, err := p.r.cloud.CreateVolume(ctx, req)
		switch {
		case errors.Is(err, cloud.ErrTokenMismatch):
			vols, lerr := p.r.cloud.VolumesByKey(ctx, p.key.Cluster, p.key.Volume)
			if lerr != nil {
				return Result{}, lerr
			}
			if len(vols) > 0 {
				log.Info("client token refused, but the key's volume exists: another pass created it", "volumeId", vols[0].ID)
				return p.retry(p.r.t.CreateWait, hint{}, "volume %s created by another pass", vols[0].ID), nil
			}
			if h.Gen > gen || h.Gen == gen && h.Burn != 0 && p.now.Sub(fromMS(h.Burn)) >= p.r.t.BurnConfirm {
				log.Warn("client token spent: EC2 keeps refusing it and no volume carries the key's tags; next generation")
				continue
			}
			if h.Gen != gen || h.Burn == 0 {
				h.Gen, h.Burn = gen, ms(p.now)
			}
			log.Warn("client token refused and no volume found; confirming before using the next generation", "error", err)
			return p.retry(p.r.t.BurnConfirm, h, "client token generation %d refused; confirming", gen), nil
		case errors.Is(err, cloud.ErrInvalidRequest):
			log.Error("EC2 refused the volume's parameters; nothing created", "error", err)
			if err := p.failNeeders(ctx, w.needers, reasonCreate, fmt.Sprintf("volume %s: EC2 refused to create it: %v", p.key.Volume, err)); err != nil {
				return Result{}, err
			}
			return done("create refused"), nil
		case err != nil:
			return Result{}, err
		}
		// EC2 answers a reused token with the volume it created then,
		// even if that volume has since been deleted.
		if p.now.Sub(v.CreateTime) >= p.r.t.CreateSettle && p.vanished(ctx, v.ID) {
			log.Warn("client token answered with a volume that no longer exists; next generation", "volumeId", v.ID)
			continue
		}
		log.Info("volume created", "volumeId", v.ID, "az", az, "sizeGiB", opts.SizeGiB, "type", opts.VolumeType, "encrypted", opts.Encrypted)
		return p.retry(p.r.t.CreateWait, hint{Step: stepCreate, Volume: v.ID, Gen: gen, At: ms(p.now), Vanished: h.Vanished},
			"creating %s", v.ID), nil
	}
	p.log.Error("no client token generation left", "generations", p.r.maxGen)
	if err := p.failNeeders(ctx, w.needers, reasonCreate, fmt.Sprintf("volume %s: EC2 refused %d create attempts", p.key.Volume, p.r.maxGen)); err != nil {
		return Result{}, err
	}
	return done("create attempts exhausted"), nil
}

// vanished reports whether EC2 no longer has volume id (or is deleting it).
func (p *pass) vanished(ctx context.Context, id string) bool {
	v, err := p.r.cloud.VolumeByID(ctx, id)
	if errors.Is(err, cloud.ErrNotFound) {
		return true
	}
	return err == nil && (v.State == cloud.VolumeDeleting || v.State == cloud.VolumeDeleted || v.State == cloud.VolumeError)
}

// vanishedVolume: EC2 deleted a volume right after creating it. The usual
// cause is a KMS key EC2 cannot use. Once is retried (next generation);
// twice fails the tasks with the likely cause.
func (p *pass) vanishedVolume(ctx context.Context, w want, h hint, opts volspec.Options) (Result, error) {
	log := p.log.With("volumeId", h.Volume, "generation", h.Gen)
	h.Vanished = p.r.mem.vanish(p.key, h.Vanished)
	if h.Vanished >= 2 {
		key := opts.KMSKeyID
		if key == "" {
			key = "the account's default EBS key"
		}
		log.Error("EC2 deleted the volume right after creating it, again; failing the tasks", "kmsKeyId", opts.KMSKeyID)
		if err := p.failNeeders(ctx, w.needers, reasonCreate, fmt.Sprintf("EC2 deleted volume %s (%s) right after creating it; check that EBS can use KMS key %s", h.Volume, p.key.Volume, key)); err != nil {
			return Result{}, err
		}
		return done("volume vanished after create"), nil
	}
	log.Warn("EC2 deleted the volume right after creating it; trying a new client token")
	next := hint{Step: stepCreate, Gen: h.Gen + 1, Vanished: h.Vanished}
	p.hint = next
	return p.create(ctx, w, nil)
}

// waitCreating: the volume is being created; EBS's createVolume event
// normally wakes the key. A created volume EC2 then deletes is caught by
// the next pass (vanished).
func (p *pass) waitCreating(ctx context.Context, w want, v cloud.Volume) (Result, error) {
	age := p.now.Sub(v.CreateTime)
	wait := max(p.r.t.CreateWait, min(age/2, 30*time.Second))
	if age > 10*time.Minute {
		p.log.Warn("volume still creating", "volumeId", v.ID, "age", age.String())
	}
	h := p.hint
	if h.Step != stepCreate || h.Volume != v.ID {
		h = hint{Step: stepCreate, Volume: v.ID, At: ms(v.CreateTime)}
	}
	return p.retry(wait, h, "waiting for %s to be created", v.ID), nil
}

// unowned: volumes tagged Name=<the key's name> that carry no tether:cluster
// tag (REX-Ray's, made by hand). tether never claims one itself (its
// functions may not tag a volume that is not already the cluster's) and
// never creates a second volume beside it: the tasks that need the name are
// stopped with a reason that says how an operator claims it (`tether
// adopt`). ok false: there is none.
func (p *pass) unowned(ctx context.Context, w want) (Result, bool, error) {
	vols, err := p.r.cloud.VolumesByName(ctx, p.key.Volume)
	if err != nil {
		return Result{}, false, err
	}
	var foreign []cloud.Volume
	for _, v := range vols {
		if v.State == cloud.VolumeDeleting || v.State == cloud.VolumeDeleted || v.State == cloud.VolumeError {
			continue
		}
		if p.tagsNameKey(v) {
			// The key's own volume, which the pass's earlier read of the
			// key did not show: made or adopted (`tether adopt`) since.
			// Never a second one beside it: look again.
			p.log.Info("a volume of the key appeared since this pass read the key's volumes; looking again", "volumeId", v.ID)
			return p.retry(p.r.t.CommandWait, hint{}, "volume %s of the key appeared meanwhile", v.ID), true, nil
		}
		if v.Tags[cloud.TagCluster] != "" {
			continue
		}
		foreign = append(foreign, v)
	}
	var class, reason string
	switch {
	case len(foreign) == 0:
		return Result{}, false, nil
	case len(foreign) == 1 && foreign[0].MultiAttach:
		// tether moves a volume by detaching it from one instance and
		// attaching it to another; a Multi-Attach volume may be attached
		// to several at once, which tether's safety rules (unmounted where
		// it leaves, one host at a time) cannot cover.
		v := foreign[0]
		class = reasonMultiAttach
		reason = fmt.Sprintf("volume %s (%s, %s) has EBS Multi-Attach enabled; tether serves single-attach volumes only: disable Multi-Attach (modify-volume --no-multi-attach-enabled) or use another volume", p.key.Volume, v.ID, v.Type)
	case len(foreign) == 1:
		v := foreign[0]
		class = reasonAdopt
		reason = fmt.Sprintf("EBS volume %s (%s) is named %s but is not tether's; tether creates no second volume: claim it with `tether adopt %s --name %s --cluster %s`, then start the task again",
			v.ID, v.AZ, p.key.Volume, v.ID, p.key.Volume, p.key.Cluster)
	default:
		class = reasonAdopt
		reason = fmt.Sprintf("EBS volumes %v are named %s and none is tether's; tether will not choose: claim one with `tether adopt VOLUME-ID --name %s --cluster %s` and rename the others",
			ids(foreign), p.key.Volume, p.key.Volume, p.key.Cluster)
	}
	p.log.Error("a volume with the name exists that tether does not own; tasks stopped", "volumeIds", ids(foreign), "class", class)
	if err := p.failNeeders(ctx, w.needers, class, reason); err != nil {
		return Result{}, false, err
	}
	return done("volume with the name not tether's: " + class), true, nil
}

// missing: autoprovision false and the cluster has no volume with the name.
func (p *pass) missing(ctx context.Context, w want) (Result, error) {
	reason := fmt.Sprintf("volume %s does not exist (no EBS volume tagged Name=%s in cluster %s) and autoprovision is false", p.key.Volume, p.key.Volume, p.key.Cluster)
	p.log.Error("volume does not exist and autoprovision is false")
	if err := p.failNeeders(ctx, w.needers, reasonMissing, reason); err != nil {
		return Result{}, err
	}
	return done("missing volume, autoprovision false"), nil
}

// AdoptionTags are the tags `tether adopt` gives a volume tether did not
// create so that the key's tasks get it (docs/contracts.md): the key's,
// shared scope, and when it was adopted; never tether:blank, so no mount of
// it is ever granted a format.
func AdoptionTags(k Key, at time.Time) map[string]string {
	p := &pass{key: k}
	t := p.tags("", "")
	t[cloud.TagAdopted] = at.UTC().Format(time.RFC3339)
	return t
}

// createTags are a new volume's tags: the deployment's extra tags
// (TETHER_EXTRA_TAGS), under tether's own.
func (p *pass) createTags(taskARN, family string) map[string]string {
	t := maps.Clone(p.r.extraTags)
	if t == nil {
		t = map[string]string{}
	}
	maps.Copy(t, p.tags(taskARN, family))
	return t
}

// tags are the tags of the key's volume (docs/contracts.md).
func (p *pass) tags(taskARN, family string) map[string]string {
	t := map[string]string{
		cloud.TagName:    p.key.Volume,
		cloud.TagCluster: p.key.Cluster,
		cloud.TagVolume:  p.key.Volume,
		cloud.TagScope:   cloud.ScopeShared,
	}
	if family != "" {
		t[cloud.TagFamilies] = family
	}
	if taskARN != "" {
		t[cloud.TagScope] = cloud.ScopeTask
		t[cloud.TagTask] = taskARN
	}
	return t
}
