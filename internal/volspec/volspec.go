// Package volspec validates what users and events hand to tether: EBS volume
// ids, Docker volume names and the driverOpts of a task definition. The agent
// (plugin Create, mount/unmount commands) and the reconciler (CreateVolume
// parameters) share it, so a volume the agent accepts is one the reconciler
// can create, and the other way round.
package volspec

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

var volumeIDPattern = regexp.MustCompile(`^vol-[0-9a-f]{8,17}$`)

// ValidateVolumeID accepts EBS volume ids as EC2 issues them: "vol-" and 8
// (old style) or 17 lowercase hex digits.
func ValidateVolumeID(id string) error {
	if !volumeIDPattern.MatchString(id) {
		return fmt.Errorf("invalid volume id %q: want vol- followed by 8 to 17 lowercase hex digits", id)
	}
	return nil
}

// MaxNameLength keeps every file tether-agent writes for NAME (NAME.json
// and its temporary siblings under <root>/plugin, the lock, the binding)
// within one path component (255 bytes), with room for their suffixes, and
// NAME within an EC2 tag value (256 characters).
const MaxNameLength = 200

// namePattern is Docker's own rule for volume names ([a-zA-Z0-9][a-zA-Z0-9_.-]),
// which already excludes "/", whitespace and shell metacharacters.
var namePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ValidateName accepts a Docker volume name that is safe as a path component,
// an EC2 tag value and an SSM parameter.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("invalid volume name: empty")
	case len(name) > MaxNameLength:
		return fmt.Errorf("invalid volume name %q: longer than %d characters", name, MaxNameLength)
	case !namePattern.MatchString(name):
		return fmt.Errorf("invalid volume name %q: must start with a letter or digit and contain only letters, digits, '_', '.' and '-'", name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("invalid volume name %q: must not contain \"..\"", name)
	}
	return nil
}

// devicePattern is the set of device names EC2 accepts for an EBS data
// volume on a Linux instance: /dev/sd[b-z], /dev/xvd[b-z], /dev/xvd[a-c][a-z]
// and /dev/xvdd[a-x] (EC2 User Guide, "Device names on Linux instances";
// aws-ebs-csi-driver's device allocator stops at xvddx likewise). The root
// device (/dev/sda1, /dev/xvda) is never one of them.
var devicePattern = regexp.MustCompile(`^/dev/(sd[b-z]|xvd[b-z]|xvd[a-c][a-z]|xvdd[a-x])$`)

// ValidateDeviceName accepts a device name EC2 accepts for an EBS data
// volume (/dev/sdf, /dev/xvdf, /dev/xvdba, /dev/xvddx), never the root
// device's, nor names past /dev/xvddx.
func ValidateDeviceName(name string) error {
	if !devicePattern.MatchString(name) {
		return fmt.Errorf("invalid device name %q: EC2 takes /dev/sd[b-z], /dev/xvd[b-z], /dev/xvd[a-c][a-z] or /dev/xvdd[a-x]", name)
	}
	return nil
}

// TaskVolumePrefix starts the tether name of every task-scoped volume.
const TaskVolumePrefix = "task-"

// taskNamePattern is the tether name of a task-scoped volume:
// task-<task id>-<volume>. Task ids are 32 hex digits (new ARN format) or a
// UUID (old format). Shared volumes may not use names of this form, so a
// name's scope is known from the name alone.
var taskNamePattern = regexp.MustCompile(`^task-([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(.+)$`)

// taskIDPattern: an ECS task id, 32 hex digits (new ARN format) or a UUID (old).
var taskIDPattern = regexp.MustCompile(`^([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// ValidTaskID reports whether id has the form of an ECS task id.
func ValidTaskID(id string) bool { return taskIDPattern.MatchString(id) }

// TaskID is the last path segment of a task ARN (or the id itself).
func TaskID(taskARN string) string {
	if i := strings.LastIndexByte(taskARN, '/'); i >= 0 {
		return taskARN[i+1:]
	}
	return taskARN
}

// TaskVolumeName is the tether name of task-scoped volume vol of a task
// (the ECS agent's own Docker name for it has a random suffix tether cannot
// know: ecs-<family>-<revision>-<volume>-<hex>).
func TaskVolumeName(taskARN, vol string) string {
	return TaskVolumePrefix + TaskID(taskARN) + "-" + vol
}

// ParseTaskVolumeName splits a task-scoped tether name; ok is false for a
// shared volume's name.
func ParseTaskVolumeName(name string) (taskID, vol string, ok bool) {
	m := taskNamePattern.FindStringSubmatch(name)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// Filesystem types tether makes on a blank device.
const (
	FSExt4 = "ext4"
	FSXFS  = "xfs"
)

// ValidateFSType accepts the filesystems tether can make and grow.
func ValidateFSType(fs string) error {
	if fs != FSExt4 && fs != FSXFS {
		return fmt.Errorf("invalid fstype %q: want %s or %s", fs, FSExt4, FSXFS)
	}
	return nil
}

// Defaults for options a task definition leaves out. REX-Ray created 16 GiB
// volumes by default; tether keeps that size but defaults to gp3 (cheaper
// than gp2 at every size, with a 3,000 IOPS baseline) and to encryption.
const (
	DefaultSizeGiB    = 16
	DefaultVolumeType = "gp3"
	DefaultFSType     = FSExt4
)

// Options is a validated set of driverOpts.
type Options struct {
	SizeGiB    int32  // size: GiB
	VolumeType string // volumetype: gp2, gp3, io1, io2, st1, sc1, standard
	IOPS       int32  // iops: provisioned IOPS (gp3, io1, io2); 0 = EBS default
	Throughput int32  // throughput: MiB/s (gp3); 0 = EBS default
	Encrypted  bool   // encrypted: true unless "false"
	KMSKeyID   string // kmskeyid: key id, alias or ARN; implies encrypted
	FSType     string // fstype: what a blank device gets (never applied to a formatted one)
	SnapshotID string // snapshotid: create the volume from this snapshot
	// DevSuid (devsuid): mount without nosuid,nodev, so set-user-ID
	// programs and device nodes on the volume work. Default false.
	DevSuid bool
	// AZMove (azmove): how a shared volume follows a task placed in
	// another availability zone: "" (never: the task fails and says why)
	// or "snapshot" (a snapshot, and a volume made from it there).
	AZMove string
	// AZMoveDeleteAfter (azmove-delete-after): how long after a move the
	// old volume may be deleted, once the new one is in use (the sweep
	// checks). 0: never (the old volume is kept). Only with azmove.
	AZMoveDeleteAfter time.Duration
	// Snapshots (snapshots): "scheduled" tags the volume for the stack's
	// Data Lifecycle Manager policy (template SnapshotCron); "" none.
	Snapshots string
	// SnapshotBeforeDelete (snapshot-before-delete): a task-scoped volume
	// is snapshotted, and deleted only once the snapshot is complete.
	SnapshotBeforeDelete bool
	// Replicas (replicas): a shared volume NAME becomes one volume per
	// replica of the service, NAME-<ordinal> (ReplicaName). Default false.
	Replicas bool
}

// AZMoveSnapshot is the one way a volume moves to another AZ.
const AZMoveSnapshot = "snapshot"

// Bounds of azmove-delete-after: at least an hour, so a move's old volume
// outlives its first hand-over (a restart, a deployment) with time to look,
// and at most a year.
const (
	MinAZMoveDeleteAfter = time.Hour
	MaxAZMoveDeleteAfter = 8760 * time.Hour
)

// ParseAZMoveDeleteAfter parses and bounds an azmove-delete-after value
// (a Go duration, "72h"). The reconciler checks the tag it wrote with it
// again before deleting anything.
func ParseAZMoveDeleteAfter(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 24h or 168h")
	}
	if d < MinAZMoveDeleteAfter || d > MaxAZMoveDeleteAfter {
		return 0, fmt.Errorf("want %s to %s", MinAZMoveDeleteAfter, MaxAZMoveDeleteAfter)
	}
	return d, nil
}

// SnapshotsScheduled marks a volume for scheduled snapshots.
const SnapshotsScheduled = "scheduled"

// Option names as a task definition's driverOpts spell them. Keys are matched
// case-insensitively, so REX-Ray's camelCase ("volumeType", "fsType") works too.
const (
	OptSize                 = "size"
	OptVolumeType           = "volumetype"
	OptIOPS                 = "iops"
	OptThroughput           = "throughput"
	OptEncrypted            = "encrypted"
	OptKMSKeyID             = "kmskeyid"
	OptFSType               = "fstype"
	OptSnapshotID           = "snapshotid"
	OptDevSuid              = "devsuid"
	OptAZMove               = "azmove"
	OptAZMoveDeleteAfter    = "azmove-delete-after"
	OptSnapshots            = "snapshots"
	OptSnapshotBeforeDelete = "snapshot-before-delete"
	OptReplicas             = "replicas"
)

// aliases are REX-Ray/libStorage spellings accepted for compatibility.
var aliases = map[string]string{
	"type":          OptVolumeType,
	"encryptionkey": OptKMSKeyID,
}

// volumeLimits are EBS's documented bounds per volume type (size in GiB,
// IOPS, throughput in MiB/s). Finer rules (IOPS per GiB ratios) are left to
// EC2, whose InvalidParameterValue names them exactly.
type volumeLimits struct {
	minSize, maxSize int32
	iops             bool // IOPS may be set
	iopsRequired     bool
	minIOPS, maxIOPS int32
	throughput       bool // throughput may be set
	minTput, maxTput int32
}

var limitsByType = map[string]volumeLimits{
	"gp2":      {minSize: 1, maxSize: 16384},
	"gp3":      {minSize: 1, maxSize: 65536, iops: true, minIOPS: 3000, maxIOPS: 80000, throughput: true, minTput: 125, maxTput: 2000},
	"io1":      {minSize: 4, maxSize: 16384, iops: true, iopsRequired: true, minIOPS: 100, maxIOPS: 64000},
	"io2":      {minSize: 4, maxSize: 65536, iops: true, iopsRequired: true, minIOPS: 100, maxIOPS: 256000},
	"st1":      {minSize: 125, maxSize: 16384},
	"sc1":      {minSize: 125, maxSize: 16384},
	"standard": {minSize: 1, maxSize: 1024},
}

var snapshotIDPattern = regexp.MustCompile(`^snap-[0-9a-f]{8,17}$`)

// kmsKeyPattern accepts a key id (uuid or mrk-), alias/NAME, or a key or alias ARN.
var kmsKeyPattern = regexp.MustCompile(`^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[a-zA-Z0-9/_-]+|alias/[a-zA-Z0-9/_-]{1,250}|(mrk-)?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}|mrk-[0-9a-f]{32})$`)

// Defaults are what a volume gets for the options its driverOpts leave
// out. A deployment may set its own (template.yaml's DefaultVolumeType,
// DefaultSizeGiB, DefaultKmsKeyId); Builtin otherwise.
type Defaults struct {
	SizeGiB    int32
	VolumeType string
	KMSKeyID   string // "" = the account's default EBS key
}

// Builtin are the defaults without a deployment's: 16 GiB gp3, encrypted
// with the account's default key.
func Builtin() Defaults {
	return Defaults{SizeGiB: DefaultSizeGiB, VolumeType: DefaultVolumeType}
}

// Validate checks that the defaults alone make a volume EBS accepts.
func (d Defaults) Validate() error {
	_, err := ParseDriverOptsWith(nil, d)
	return err
}

// ParseDriverOpts validates a task definition's driverOpts and fills in the
// built-in defaults. An unknown option or a bad value is an error that
// names it.
func ParseDriverOpts(opts map[string]string) (Options, error) {
	return ParseDriverOptsWith(opts, Builtin())
}

// ParseDriverOptsWith is ParseDriverOpts with a deployment's defaults.
func ParseDriverOptsWith(opts map[string]string, d Defaults) (Options, error) {
	if _, known := limitsByType[d.VolumeType]; d.SizeGiB <= 0 || !known {
		return Options{}, fmt.Errorf("volspec: defaults %+v: want a size and a volume type of gp2, gp3, io1, io2, st1, sc1, standard", d)
	}
	if d.KMSKeyID != "" && !kmsKeyPattern.MatchString(d.KMSKeyID) {
		return Options{}, fmt.Errorf("volspec: default KMS key %q: want a KMS key id, alias/NAME or key ARN", d.KMSKeyID)
	}
	o := Options{SizeGiB: d.SizeGiB, VolumeType: d.VolumeType, Encrypted: true, FSType: DefaultFSType}
	seen := map[string]string{}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic errors
	for _, key := range keys {
		value := strings.TrimSpace(opts[key])
		name := strings.ToLower(key)
		if canonical, ok := aliases[name]; ok {
			name = canonical
		}
		if prev, dup := seen[name]; dup {
			return Options{}, fmt.Errorf("driverOpts: %q and %q both set option %s", prev, key, name)
		}
		seen[name] = key
		var err error
		switch name {
		case OptSize:
			o.SizeGiB, err = parsePositive(value)
		case OptVolumeType:
			o.VolumeType = strings.ToLower(value)
			if _, ok := limitsByType[o.VolumeType]; !ok {
				err = fmt.Errorf("want one of gp2, gp3, io1, io2, st1, sc1, standard")
			}
		case OptIOPS:
			o.IOPS, err = parsePositive(value)
		case OptThroughput:
			o.Throughput, err = parsePositive(value)
		case OptEncrypted:
			o.Encrypted, err = strconv.ParseBool(value)
		case OptKMSKeyID:
			o.KMSKeyID = value
			if !kmsKeyPattern.MatchString(value) {
				err = fmt.Errorf("want a KMS key id, alias/NAME or key ARN")
			}
		case OptFSType:
			o.FSType = strings.ToLower(value)
			err = ValidateFSType(o.FSType)
		case OptDevSuid:
			o.DevSuid, err = strconv.ParseBool(value)
		case OptReplicas:
			o.Replicas, err = strconv.ParseBool(value)
		case OptSnapshotID:
			o.SnapshotID = value
			if !snapshotIDPattern.MatchString(value) {
				err = fmt.Errorf("want snap- followed by 8 to 17 lowercase hex digits")
			}
		case OptAZMove:
			o.AZMove = strings.ToLower(value)
			if o.AZMove != AZMoveSnapshot {
				err = fmt.Errorf("want %q (move by snapshot to the task's availability zone)", AZMoveSnapshot)
			}
		case OptAZMoveDeleteAfter:
			o.AZMoveDeleteAfter, err = ParseAZMoveDeleteAfter(value)
		case OptSnapshotBeforeDelete:
			o.SnapshotBeforeDelete, err = strconv.ParseBool(value)
		case OptSnapshots:
			o.Snapshots = strings.ToLower(value)
			if o.Snapshots != SnapshotsScheduled {
				err = fmt.Errorf("want %q (the stack's Data Lifecycle Manager schedule, SnapshotCron)", SnapshotsScheduled)
			}
		default:
			return Options{}, fmt.Errorf("driverOpts: unknown option %q (known: size, volumetype, iops, throughput, encrypted, kmskeyid, fstype, snapshotid, devsuid, replicas, azmove, azmove-delete-after, snapshots, snapshot-before-delete)", key)
		}
		if err != nil {
			return Options{}, fmt.Errorf("driverOpts: option %s=%q: %w", key, opts[key], err)
		}
	}
	if o.KMSKeyID == "" && o.Encrypted {
		o.KMSKeyID = d.KMSKeyID
	}
	if err := o.checkCombination(seen); err != nil {
		return Options{}, err
	}
	return o, nil
}

func (o Options) checkCombination(seen map[string]string) error {
	lim := limitsByType[o.VolumeType]
	if o.SizeGiB < lim.minSize || o.SizeGiB > lim.maxSize {
		return fmt.Errorf("driverOpts: option size=%d: %s volumes are %d to %d GiB", o.SizeGiB, o.VolumeType, lim.minSize, lim.maxSize)
	}
	if o.IOPS != 0 {
		if !lim.iops {
			return fmt.Errorf("driverOpts: option %s: %s volumes do not take provisioned IOPS", seen[OptIOPS], o.VolumeType)
		}
		if o.IOPS < lim.minIOPS || o.IOPS > lim.maxIOPS {
			return fmt.Errorf("driverOpts: option iops=%d: %s volumes take %d to %d IOPS", o.IOPS, o.VolumeType, lim.minIOPS, lim.maxIOPS)
		}
	} else if lim.iopsRequired {
		return fmt.Errorf("driverOpts: option iops is required for %s volumes", o.VolumeType)
	}
	if o.Throughput != 0 {
		if !lim.throughput {
			return fmt.Errorf("driverOpts: option %s: %s volumes do not take a throughput setting", seen[OptThroughput], o.VolumeType)
		}
		if o.Throughput < lim.minTput || o.Throughput > lim.maxTput {
			return fmt.Errorf("driverOpts: option throughput=%d: %s volumes take %d to %d MiB/s", o.Throughput, o.VolumeType, lim.minTput, lim.maxTput)
		}
	}
	if o.KMSKeyID != "" && !o.Encrypted {
		return fmt.Errorf("driverOpts: option kmskeyid needs encrypted=true")
	}
	if o.AZMoveDeleteAfter != 0 && o.AZMove != AZMoveSnapshot {
		return fmt.Errorf("driverOpts: option %s needs azmove=%s (it deletes the volume a move left behind)", seen[OptAZMoveDeleteAfter], AZMoveSnapshot)
	}
	return nil
}

func parsePositive(s string) (int32, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive whole number")
	}
	return int32(n), nil
}

// Per-replica volumes (driverOpt replicas=true): the shared volume NAME of
// a service's task is the EBS volume NAME-<ordinal>, the lowest ordinal
// free in the task's AZ, held by the task until it stops.

// MaxReplicas bounds the ordinals: NAME-0 to NAME-(MaxReplicas-1).
const MaxReplicas = 1000

// ReplicaFile is the file the agent writes in the root of a replica's
// filesystem: its ordinal, in decimal, and a newline.
const ReplicaFile = ".tether-replica"

// ReplicaName is the tether name of replica n of the shared volume base.
func ReplicaName(base string, n int) string { return base + "-" + strconv.Itoa(n) }

// ValidateReplicaBase accepts a shared volume name whose replicas'
// names (base-0 to base-999) are all valid names.
func ValidateReplicaBase(base string) error {
	if err := ValidateName(base); err != nil {
		return err
	}
	return ValidateName(ReplicaName(base, MaxReplicas-1))
}

// ParseReplicaName splits NAME-<ordinal> (an ordinal below MaxReplicas,
// without leading zeros); ok is false for any other name.
func ParseReplicaName(name string) (base string, n int, ok bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return "", 0, false
	}
	digits := name[i+1:]
	if len(digits) > 1 && digits[0] == '0' {
		return "", 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || n >= MaxReplicas || strconv.Itoa(n) != digits {
		return "", 0, false
	}
	return name[:i], n, true
}
