package fakehost

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
)

// Disks is what each EBS volume holds, shared by every fake host of one
// world so that data follows a volume from instance to instance, as the
// backing file does for real hosts.
type Disks struct {
	mu   sync.Mutex
	vols map[string]*disk
}

type disk struct {
	fsType          string // "" while blank
	signature       string // a signature tether must not touch (partition table, LVM...)
	formats         int
	writes          []string
	checksum        string
	uncleanDetaches int
}

// DiskState is a test's view of one volume's contents.
type DiskState struct {
	FSType    string   // "" while blank
	Formats   int      // times a filesystem was made on it (more than 1 is data loss)
	Writes    []string // task ARNs that ran with it mounted, in order
	Checksum  string   // hash chain over Writes
	Unclean   int      // detaches or host deaths while it was mounted
	Signature string
}

// NewDisks returns empty storage.
func NewDisks() *Disks { return &Disks{vols: map[string]*disk{}} }

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
		Checksum: v.checksum, Unclean: v.uncleanDetaches, Signature: v.signature,
	}, true
}

// SetSignature gives a volume a foreign signature (e.g. "gpt", "LVM2_member"):
// tether-agent mount must refuse it with exit 5.
func (d *Disks) SetSignature(volumeID, signature string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.get(volumeID).signature = signature
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

// format makes a filesystem; it refuses a device that has any signature.
func (d *Disks) probe(volumeID string) (fsType, signature string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.get(volumeID)
	return v.fsType, v.signature
}

func (d *Disks) format(volumeID, fsType string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.get(volumeID)
	v.fsType = fsType
	v.formats++
	v.writes, v.checksum = nil, ""
}

func (d *Disks) unclean(volumeID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.get(volumeID).uncleanDetaches++
}
