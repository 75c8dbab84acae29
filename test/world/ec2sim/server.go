// Package ec2sim is the local world's Amazon EC2: the EBS volume, snapshot
// and instance actions tether and the seed's aws CLI commands use, over
// EC2's query protocol (form in, XML out) with EC2's element names and
// error codes, so aws-sdk-go-v2 (BaseEndpoint) and the aws CLI
// (--endpoint-url) work against it unchanged.
//
// Volumes have EC2's state machines (creating -> available -> in-use ->
// deleting; attachments attaching -> attached -> detaching -> detached),
// timed by a latency profile; their bytes are sparse files that the
// instance's worldapi.Host turns into block devices. Instances pass
// through stopping and shutting-down (lifecycle.go) and have status checks
// (status.go).
//
// It is never kinder than EC2: it refuses what EC2 refuses with EC2's
// codes (volume-type limits in rules.go, device names and instance states
// in attach.go, attachment limits in limits.go), throttles with EC2's
// documented token buckets, reads included (throttle.go), and sends only
// the events AWS documents (events.go). Each rule names its source. The
// quirks operators meet (stuck attachments, busy detaches, asynchronous
// create failures, unusable device names after a force detach, unusable
// KMS keys, hung guests) are switched on by test-control methods
// (faults.go, status.go).
package ec2sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/latency"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Config sets up a Server.
type Config struct {
	Region  string   // default us-west-2
	Account string   // 12 digits, default 123456789012
	AZs     []string // default Region + a, b, c
	// Profile times the asynchronous transitions (latency.Instant() if
	// its Dists is nil).
	Profile latency.Profile
	// Seed makes ids, latencies and random faults reproducible.
	Seed uint64
	// Dir holds one sparse backing file per volume and per snapshot.
	Dir string
	// Publisher receives EBS notifications (nil: none are sent).
	Publisher worldapi.Publisher
	Logger    *slog.Logger // default slog.Default()
	// BusyRetry is how often a detach the guest refuses (device busy) is
	// tried again (default 500ms).
	BusyRetry time.Duration
	// ModifyCooldown is EC2's minimum time between two modifications of a
	// volume (default 6h, as AWS documents; tests may shorten it).
	ModifyCooldown time.Duration
	// DetachEvents sends an EBS detachVolume event (result "detached") when
	// a detach completes. Off by default: the EBS guide lists the event but
	// tether must not depend on it (see events.go).
	DetachEvents bool
	// InstanceStateChanged, if set, is told of every state an instance
	// enters (pending, running, stopping, stopped, shutting-down,
	// terminated), in order, on one goroutine, outside the server's lock.
	// The world uses it to take a stopped or terminated instance's SSM and
	// ECS agents away, whoever stopped it.
	InstanceStateChanged func(instanceID, state string)
	// SnapshotCopied, if set, is told of a snapshot once its bytes are
	// copied from its volume (at CreateSnapshot), and VolumeRestored of a
	// volume once a snapshot's bytes are copied into it (before it is
	// available), outside the server's lock: the world's fake hosts keep
	// what a volume holds beside its backing file and copy it likewise.
	SnapshotCopied func(snapshotID, volumeID string)
	VolumeRestored func(volumeID, snapshotID string)
}

// Server is the simulated EC2 of one account and Region. All state is
// behind mu; host calls and file copies happen outside it.
type Server struct {
	cfg Config
	log *slog.Logger
	lat *latency.Sampler
	// Controls: the gate every call passes (throttling, scripted faults,
	// counts) and its test controls (FailNext, ThrottleNext, SetErrorRate,
	// SetThrottling, Counts, Gate).
	awsproto.Controls
	handlers map[string]action

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	rng       *rand.Rand
	seq       int64 // creation order of every resource
	volumes   map[string]*volume
	snapshots map[string]*snapshot
	instances map[string]*instance
	tokens    map[string]*clientToken
	kms       map[string]*kmsKey // by every name a key answers to
	faults    faults
	notes     *notifier
	resources *resourceBuckets
}

// action is one row of the dispatch table: the handler and the top-level
// parameters it accepts (anything else is UnknownParameter, as EC2 says).
type action struct {
	run    func(ctx context.Context, form url.Values) (any, error)
	params []string
}

// New makes a Server; it creates cfg.Dir if needed.
func New(cfg Config) (*Server, error) {
	if cfg.Region == "" {
		cfg.Region = "us-west-2"
	}
	if cfg.Account == "" {
		cfg.Account = "123456789012"
	}
	if len(cfg.AZs) == 0 {
		cfg.AZs = []string{cfg.Region + "a", cfg.Region + "b", cfg.Region + "c"}
	}
	if cfg.Profile.Dists == nil {
		cfg.Profile = latency.Instant()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.BusyRetry <= 0 {
		cfg.BusyRetry = 500 * time.Millisecond
	}
	if cfg.ModifyCooldown == 0 {
		cfg.ModifyCooldown = 6 * time.Hour
	}
	if cfg.Dir == "" {
		return nil, errors.New("ec2sim: Config.Dir is required (volumes' backing files live there)")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("ec2sim: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("service", "ec2"),
		lat:       latency.NewSampler(cfg.Profile, cfg.Seed),
		Controls:  awsproto.ControlsOf(awsproto.NewGate(awsproto.GateConfig{Limits: DefaultLimits(), Throttle: awsproto.Throttled, Seed: cfg.Seed + 1})),
		ctx:       ctx,
		cancel:    cancel,
		rng:       rand.New(rand.NewPCG(cfg.Seed, 0xec2)),
		volumes:   map[string]*volume{},
		snapshots: map[string]*snapshot{},
		instances: map[string]*instance{},
		tokens:    map[string]*clientToken{},
		kms:       map[string]*kmsKey{},
		faults:    newFaults(),
		notes:     newNotifier(),
		resources: newResourceBuckets(),
	}
	s.wg.Go(func() { s.notes.run(ctx, cfg.InstanceStateChanged) })
	s.addDefaultKMSKey()
	common := []string{"DryRun"}
	filtered := append([]string{"Filter", "MaxResults", "NextToken"}, common...)
	s.handlers = map[string]action{
		"CreateVolume": {s.createVolume, append([]string{"AvailabilityZone", "Size", "SnapshotId", "VolumeType",
			"Iops", "Throughput", "Encrypted", "KmsKeyId", "TagSpecification", "ClientToken", "MultiAttachEnabled"}, common...)},
		"DescribeVolumes":              {s.describeVolumes, append([]string{"VolumeId"}, filtered...)},
		"DeleteVolume":                 {s.deleteVolume, append([]string{"VolumeId"}, common...)},
		"AttachVolume":                 {s.attachVolume, append([]string{"VolumeId", "InstanceId", "Device"}, common...)},
		"DetachVolume":                 {s.detachVolume, append([]string{"VolumeId", "InstanceId", "Device", "Force"}, common...)},
		"ModifyVolume":                 {s.modifyVolume, append([]string{"VolumeId", "Size", "VolumeType", "Iops", "Throughput", "MultiAttachEnabled"}, common...)},
		"DescribeVolumesModifications": {s.describeVolumesModifications, append([]string{"VolumeId"}, filtered...)},
		"CreateSnapshot":               {s.createSnapshot, append([]string{"VolumeId", "Description", "TagSpecification"}, common...)},
		"DescribeSnapshots":            {s.describeSnapshots, append([]string{"SnapshotId", "Owner", "RestorableBy"}, filtered...)},
		"DeleteSnapshot":               {s.deleteSnapshot, append([]string{"SnapshotId"}, common...)},
		"CreateTags":                   {s.createTags, append([]string{"ResourceId", "Tag"}, common...)},
		"DeleteTags":                   {s.deleteTags, append([]string{"ResourceId", "Tag"}, common...)},
		"DescribeInstances":            {s.describeInstances, append([]string{"InstanceId"}, filtered...)},
		"DescribeInstanceStatus":       {s.describeInstanceStatus, append([]string{"InstanceId", "IncludeAllInstances"}, filtered...)},
		"StopInstances":                {s.stopInstances, append([]string{"InstanceId", "Force", "Hibernate", "SkipOsShutdown"}, common...)},
		"TerminateInstances":           {s.terminateInstances, append([]string{"InstanceId", "Force", "SkipOsShutdown"}, common...)},
		"DescribeAvailabilityZones":    {s.describeAvailabilityZones, append([]string{"ZoneName", "ZoneId", "Filter", "AllAvailabilityZones"}, common...)},
	}
	return s, nil
}

// Register puts the server on the router's EC2 endpoint.
func (s *Server) Register(r *awsproto.Router) { r.HandleEC2(s.Handle) }

// Handle answers one EC2 query-protocol call (the awsproto.QueryHandler).
func (s *Server) Handle(ctx context.Context, name string, form url.Values) (any, error) {
	a, ok := s.handlers[name]
	if !ok {
		return nil, awsproto.BadRequest("InvalidAction", "The action %s is not valid for this web service.", name)
	}
	if err := checkParams(form, a.params); err != nil {
		return nil, err
	}
	if e := s.Gate().Admit(name, bucketFor(name, form)); e != nil {
		return nil, e
	}
	if form.Get("DryRun") == "true" {
		return nil, awsproto.Errorf(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
	}
	return a.run(ctx, form)
}

func checkParams(form url.Values, allowed []string) error {
	for k := range form {
		top, _, _ := strings.Cut(k, ".")
		if top == "Action" || top == "Version" {
			continue
		}
		known := false
		for _, p := range allowed {
			if strings.EqualFold(top, p) {
				known = true
				break
			}
		}
		if !known {
			return awsproto.BadRequest("UnknownParameter", "The parameter %s is not recognized", k)
		}
	}
	return nil
}

// Close stops every pending transition and waits for the workers. Backing
// files stay in Dir (the caller owns it).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// after runs fn on its own goroutine once d has passed, unless the server
// closes first. It is how every asynchronous transition is scheduled.
func (s *Server) after(d time.Duration, fn func(ctx context.Context)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.afterLocked(d, fn)
}

// sleep waits d or until ctx ends; it reports whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// newID makes an EC2-style id: prefix, "-0", 16 hex digits. Caller holds mu.
func (s *Server) newID(prefix string, taken func(string) bool) string {
	for {
		id := fmt.Sprintf("%s-0%016x", prefix, s.rng.Uint64())
		if !taken(id) {
			return id
		}
	}
}

func (s *Server) nextSeq() int64 { s.seq++; return s.seq }

func (s *Server) arn(kind, id string) string {
	return "arn:aws:ec2:" + s.cfg.Region + ":" + s.cfg.Account + ":" + kind + "/" + id
}

func (s *Server) hasAZ(az string) bool {
	for _, z := range s.cfg.AZs {
		if z == az {
			return true
		}
	}
	return false
}
