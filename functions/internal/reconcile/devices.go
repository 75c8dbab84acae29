package reconcile

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tether-ecs/tether/internal/volspec"
)

// devices allocates the device names tether attaches volumes as, per
// instance, as aws-ebs-csi-driver's devicemanager does for a node: only
// names EC2 takes for EBS data volumes (volspec.ValidateDeviceName), never
// one the instance has mapped (read before choosing), one this process is
// attaching there right now, or one EC2 refused although nothing used it
// (poisoned, as a force-detached Xen name can stay). Among the free names
// the volume id's hash picks one, so processes attaching different volumes
// to one instance at once rarely pick the same.
//
// Lock discipline: mu guards both maps; every method holds it for its body.
// pick calls attachedOn (memory's lock) while holding mu, so that a name a
// concurrent pass of this process has just attached with is seen at once;
// memory never calls back, so the order devices -> memory is the only one.
type devices struct {
	mu        sync.Mutex
	attaching map[string]map[string]string     // instance -> device -> volume id being attached now
	poisoned  *simplelru.LRU[string, []string] // instance -> names EC2 refused although unused
}

func newDevices() *devices {
	return &devices{attaching: map[string]map[string]string{}, poisoned: newLRU[string, []string]()}
}

// deviceNames are EC2's names for EBS data volumes in tether's order of
// preference: /dev/xvd[f-z] (EC2's recommended range), then the two-letter
// names /dev/xvd[a-c][a-z] and /dev/xvdd[a-x] (123 in all). /dev/xvd[b-e]
// are left to instance store volumes.
var deviceNames = func() []string {
	var out []string
	for c := 'f'; c <= 'z'; c++ {
		out = append(out, "/dev/xvd"+string(c))
	}
	for _, c := range "abcd" {
		last := 'z'
		if c == 'd' {
			last = 'x'
		}
		for d := 'a'; d <= last; d++ {
			out = append(out, "/dev/xvd"+string(c)+string(d))
		}
	}
	for _, n := range out {
		if err := volspec.ValidateDeviceName(n); err != nil {
			panic(err) // the list above and volspec disagree
		}
	}
	return out
}()

// pick reserves a device name on instance for volumeID. avoid holds the
// instance's mapped names and any EC2 refused in this pass. The free names
// are spread by a hash of the volume id and salt (the pass's clock) over
// the whole list: concurrent processes that cannot see each other's
// attaches collide with probability about n²/(2·123) for n at once, where
// spreading over the preferred range alone (21 names) would make ten at
// once collide almost surely (p ≈ 0.9). The salt gives a volume attached
// again to the same instance another name most of the time, so a stale
// detach that names the old attachment's device is refused by EC2.
func (d *devices) pick(instance, volumeID, salt string, avoid map[string]bool, attachedOn func() []string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	poisoned, _ := d.poisoned.Get(instance)
	known := attachedOn()
	var free []string
	for _, n := range deviceNames {
		if avoid[n] || d.attaching[instance][n] != "" || contains(poisoned, n) || contains(known, n) {
			continue
		}
		free = append(free, n)
	}
	if len(free) == 0 {
		return "", false
	}
	h := sha256.Sum256([]byte(volumeID + "/" + salt))
	dev := free[binary.BigEndian.Uint64(h[:8])%uint64(len(free))]
	if d.attaching[instance] == nil {
		d.attaching[instance] = map[string]string{}
	}
	d.attaching[instance][dev] = volumeID
	return dev, true
}

// release ends pick's reservation (an attachment made with the name is
// known from the instance's mappings or memory by then).
func (d *devices) release(instance, dev string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.attaching[instance], dev)
	if len(d.attaching[instance]) == 0 {
		delete(d.attaching, instance)
	}
}

// poison: never use dev on instance again (in this process).
func (d *devices) poison(instance, dev string) {
	if dev == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old, _ := d.poisoned.Get(instance)
	if !contains(old, dev) {
		d.poisoned.Add(instance, append(append([]string(nil), old...), dev))
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
