package ec2sim

import (
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/worldapi"
)

// Volume states (EC2's VolumeState) and attachment states
// (VolumeAttachmentState).
const (
	stateCreating  = "creating"
	stateAvailable = "available"
	stateInUse     = "in-use"
	stateDeleting  = "deleting"

	attAttaching = "attaching"
	attAttached  = "attached"
	attDetaching = "detaching"
	attDetached  = "detached"
)

type volume struct {
	id, az, typ  string
	size         int32
	iops         int32 // 0: the type has no IOPS figure
	throughput   int32 // 0: not gp3
	encrypted    bool
	kmsKey       string
	snapshotID   string
	state        string
	created      time.Time
	seq          int64
	tags         map[string]string
	att          *attachment
	backing      string
	mod          *modification
	clientToken  string
	requestID    string // of CreateVolume, for the createVolume event
	failCause    string // set: the create fails asynchronously with this cause
	attachDelay  time.Duration
	stickAttach  bool // fault: the next attachment never completes
	stickDetach  bool // fault: the next detach stays detaching until forced
	multiAttach  bool
	hostMu       sync.Mutex
	lastModStart time.Time
}

type attachment struct {
	instanceID, device, state string
	at                        time.Time
	deleteOnTermination       bool
	gen                       uint64 // bumped on each transition, so stale workers stop
	onHost                    bool   // the host has the device
	force                     bool
	stuck                     bool // detach never completes unless forced
	stuckAttach               bool
	wake                      chan struct{} // nudges a waiting detach (force)
	requestID                 string
	detachTries               int // detach attempts so far (tests watch it)
}

type modification struct {
	state                        string // modifying, optimizing, completed, failed
	start, end                   time.Time
	origSize, targetSize         int32
	origType, targetType         string
	origIops, targetIops         int32
	origThroughput, targetThrput int32
	origMulti, targetMulti       bool
	progress                     int64
}

type snapshot struct {
	id, volumeID, state, description string
	volumeSize                       int32
	encrypted                        bool
	kmsKey                           string
	started, completed               time.Time
	seq                              int64
	tags                             map[string]string
	backing                          string
}

type instance struct {
	id, az, typ, image, rootDevice, privateIP string
	reservation                               string
	host                                      worldapi.Host
	state                                     string
	stateReason                               string // DescribeInstances' reason, once stopped or terminated
	launched                                  time.Time
	seq                                       int64
	tags                                      map[string]string
	devices                                   map[string]string // device name -> volume id
	poisoned                                  map[string]bool   // names unusable until reboot
	poisonOnForce                             bool              // fault: a force detach leaves the name unusable
	networkInterfaces                         int               // attached network interfaces, the primary one included
	guestGone                                 bool              // the host was killed (stopped, terminated, or died)
	transition                                uint64            // bumped on every state change, so stale workers stop
	settled                                   chan struct{}     // closed when a termination has released the volumes
	status                                    statusChecks
	spot                                      bool   // launched as a Spot Instance (InstanceLifecycle "spot")
	reasonCode                                string // StateReason code of the transition under way or last made ("" = Client.UserInitiatedShutdown)
	spotDue                                   bool   // a Spot interruption is pending (spot.go)
}

type clientToken struct {
	fingerprint string
	volumeID    string
	failed      bool
	last        xmlVolume // as last seen, answered after the volume is gone
}

// kmsKey is one of the account's KMS keys; state is "" while the key is
// enabled, else what EBS says of it ("disabled", "pending deletion").
type kmsKey struct {
	arn   string
	state string
}
