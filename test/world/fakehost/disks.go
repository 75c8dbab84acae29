package fakehost

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// Disks is what each EBS volume holds, shared by every fake host of one
// world so that data follows a volume from instance to instance, as the
// backing file does for real hosts. A disk's contents are modelled as the
// facts tether-agent reads: a filesystem, a foreign signature, or no
// signature at all with either zeros (blank) or data (a torn superblock,
// raw data), which the agent tells apart by reading the device.
type Disks struct {
	mu   sync.Mutex
	vols map[string]*disk
	// tearOnForce: a volume detached by force (or lost with its host)
	// while mounted loses its primary superblock.
	tearOnForce bool
	mkfs        []Mkfs
	// snaps: what each EBS snapshot holds, copied at CreateSnapshot (a
	// point-in-time copy of the volume's blocks, as the backing file's).
	snaps map[string]disk
}

type disk struct {
	fsType          string // "" while no filesystem signature
	signature       string // a signature tether must not touch (partition table, LVM...)
	torn            bool   // a filesystem whose primary superblock was lost: no signature, data
	tornFS          string // the filesystem a torn superblock belonged to (its backups say so)
	raw             bool   // raw data without a signature
	dirty           bool   // not cleanly unmounted: the next mount checks it
	formats         int
	writes          []string
	checksum        string
	uncleanDetaches int
	fsBytes         int64 // the filesystem's size (0: unknown, not measured yet)
	// restoredFrom, fromSnapshot: the volume and snapshot a volume made
	// from a snapshot holds the contents of ("" for the rest).
	restoredFrom, fromSnapshot string
}

// DiskState is a test's view of one volume's contents.
type DiskState struct {
	FSType    string   // "" while no filesystem signature
	Formats   int      // times a filesystem was made on it (more than 1 is data loss)
	Writes    []string // task ARNs that ran with it mounted, in order
	Checksum  string   // hash chain over Writes
	Unclean   int      // detaches or host deaths while it was mounted
	Signature string
	Torn      bool // the primary superblock is lost (data without a signature)
	Raw       bool // raw data without a signature
	// FSBytes: the filesystem's size as a fake agent last made or grew it
	// (0: not measured).
	FSBytes int64
	// RestoredFrom and FromSnapshot: made from a snapshot of that volume
	// ("" for a volume made empty).
	RestoredFrom, FromSnapshot string
}

// Mkfs is one filesystem made by a fake agent.
type Mkfs struct {
	VolumeID string
	Instance string
	FSType   string
	// Granted: the mount command had --format-if-blank (the fake agent,
	// like the real one, never formats without it: a record with Granted
	// false is a bug in the fake).
	Granted bool
	At      time.Time
}

// NewDisks returns empty storage.
func NewDisks() *Disks { return &Disks{vols: map[string]*disk{}, snaps: map[string]disk{}} }

// Snapshot copies what the volume holds into the snapshot, as EBS's
// CreateSnapshot copies its blocks at the time of the call.
func (d *Disks) Snapshot(snapshotID, volumeID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := *d.get(volumeID)
	v.writes = append([]string(nil), v.writes...)
	v.restoredFrom, v.fromSnapshot = volumeID, snapshotID
	d.snaps[snapshotID] = v
}

// Restore gives a volume made from a snapshot the snapshot's contents: its
// filesystem (with its size, as made: the device may be larger until the
// agent grows it), signatures, damage and data history. It is a new
// volume: no detach of it was ever unclean.
func (d *Disks) Restore(volumeID, snapshotID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sn, ok := d.snaps[snapshotID]
	if !ok {
		return // a snapshot of a volume no host ever saw: blank, as its blocks
	}
	sn.writes = append([]string(nil), sn.writes...)
	sn.uncleanDetaches = 0
	d.vols[volumeID] = &sn
}

func (d *Disks) get(volumeID string) *disk {
	v := d.vols[volumeID]
	if v == nil {
		v = &disk{}
		d.vols[volumeID] = v
	}
	return v
}

// Volume returns what the volume holds; false if no host ever saw it.
func (d *Disks) Volume(volumeID string) (DiskState, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.vols[volumeID]
	if !ok {
		return DiskState{}, false
	}
	return DiskState{
		FSType: v.fsType, Formats: v.formats, Writes: append([]string(nil), v.writes...),
		Checksum: v.checksum, Unclean: v.uncleanDetaches, Signature: v.signature, Torn: v.torn, Raw: v.raw, FSBytes: v.fsBytes,
		RestoredFrom: v.restoredFrom, FromSnapshot: v.fromSnapshot,
	}, true
}

// Mkfs lists every filesystem a fake agent made, in order (chaos checks
// "no mkfs without a grant" and "no mkfs of a volume that had data").
func (d *Disks) Mkfs() []Mkfs {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Mkfs(nil), d.mkfs...)
}

// SetSignature gives a volume a foreign signature (e.g. "gpt", "LVM2_member"):
// tether-agent mount must refuse it with exit 5.
func (d *Disks) SetSignature(volumeID, signature string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.get(volumeID).signature = signature
}

// TearSuperblock makes a volume's filesystem lose its primary superblock
// (its data and backup superblocks intact): blkid finds nothing, the
// device is not blank. tether-agent mount must refuse it (exit 6), grant
// or not.
func (d *Disks) TearSuperblock(volumeID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.get(volumeID)
	v.tornFS, v.fsType, v.torn = v.fsType, "", true
}

// RepairSuperblock is an operator's repair of a torn superblock from its
// backups (`e2fsck -b 32768`, `xfs_repair`): the filesystem and its data
// are back, not cleanly unmounted (the next mount checks it). False when
// the volume is not torn.
func (d *Disks) RepairSuperblock(volumeID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.vols[volumeID]
	if v == nil || !v.torn || v.tornFS == "" {
		return false
	}
	v.fsType, v.torn, v.tornFS, v.dirty = v.tornFS, false, "", true
	return true
}

// SetRawData puts data without any signature on a volume (exit 6, grant
// or not).
func (d *Disks) SetRawData(volumeID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.get(volumeID).raw = true
}

// TearOnForceDetach makes every later force detach (or host death) of a
// mounted volume tear its superblock (chaos's "torn superblock after a
// force detach").
func (d *Disks) TearOnForceDetach(on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tearOnForce = on
}

// write records that a task ran with the volume mounted: the data the
// volume carries from owner to owner.
func (d *Disks) write(volumeID, taskArn string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.get(volumeID)
	v.writes = append(v.writes, taskArn)
	sum := sha256.Sum256([]byte(v.checksum + "\n" + taskArn))
	v.checksum = hex.EncodeToString(sum[:])
}

// contents is what the agent's probe and blank proof read.
type contents struct {
	fsType    string // a mountable filesystem
	signature string // refused
	damaged   bool   // no signature, data: torn superblock or raw
	dirty     bool
}

func (d *Disks) read(volumeID string) contents {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.get(volumeID)
	return contents{fsType: v.fsType, signature: v.signature, damaged: v.torn || v.raw || (v.fsType == "" && len(v.writes) > 0), dirty: v.dirty}
}

// format makes a filesystem (the caller proved the grant and the blank).
func (d *Disks) format(volumeID, fsType, instance string, granted bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.get(volumeID)
	v.fsType = fsType
	v.fsBytes = 0 // the mount measures the new filesystem: the device's size
	v.formats++
	v.writes, v.checksum, v.dirty = nil, "", false
	d.mkfs = append(d.mkfs, Mkfs{VolumeID: volumeID, Instance: instance, FSType: fsType, Granted: granted, At: time.Now()})
}

// grow is tether-agent's online grow after a mount: the filesystem spans
// the device's size (devBytes, as the kernel sees it; 0: unknown). It
// reports whether it grew and the filesystem's size. A filesystem first
// measured here (just made, or from before sizes were kept) takes the
// device's size without counting as grown.
func (d *Disks) grow(volumeID string, devBytes int64) (grown bool, fsBytes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.get(volumeID)
	if v.fsType == "" || devBytes <= 0 {
		return false, v.fsBytes
	}
	if devBytes > v.fsBytes {
		grown = v.fsBytes > 0
		v.fsBytes = devBytes
	}
	return grown, v.fsBytes
}

// checked clears the dirty state (the mount's fsck ran).
func (d *Disks) checked(volumeID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.get(volumeID).dirty = false
}

// unclean records a detach or host death with the volume mounted.
func (d *Disks) unclean(volumeID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.get(volumeID)
	v.uncleanDetaches++
	v.dirty = true
	if d.tearOnForce && v.fsType != "" {
		v.tornFS, v.fsType, v.torn = v.fsType, "", true
	}
}
