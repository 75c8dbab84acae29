package ec2sim

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
	"github.com/tether-ecs/tether/test/world/worldapi"
)

// InstanceSpec describes an instance the world launches.
type InstanceSpec struct {
	ID         string        // i-...; required
	AZ         string        // one of Config.AZs; required
	Type       string        // default t3.medium (the hosts' ecs.instance-type); one of limits.go's types
	Host       worldapi.Host // the guest; nil: attachments complete without a device
	ImageID    string        // default ami-0123456789abcdef0
	RootDevice string        // default /dev/xvda
	// RootVolumeGiB sizes the root volume every instance launches with
	// (gp3, DeleteOnTermination; default 30, the ECS-optimized AMI's). The
	// guest never gets it as a device: it has its own root.
	RootVolumeGiB int32
	PrivateIP     string
	Tags          map[string]string
	// NetworkInterfaces attached at launch, the primary one included
	// (default 1); they share the instance's attachment limit with its EBS
	// volumes on most Nitro types (limits.go).
	NetworkInterfaces int
	// Spot launches a Spot Instance: DescribeInstances says
	// InstanceLifecycle "spot", and InterruptSpotInstance may reclaim it.
	Spot bool
}

// validInstanceID accepts EC2's i- followed by 8 or 17 hex digits.
func validInstanceID(id string) bool {
	rest, ok := strings.CutPrefix(id, "i-")
	if !ok || (len(rest) != 8 && len(rest) != 17) {
		return false
	}
	for _, c := range rest {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// AddInstance launches an instance: it is running at once (its pending and
// running state changes are published together).
func (s *Server) AddInstance(spec InstanceSpec) error {
	if !validInstanceID(spec.ID) {
		return fmt.Errorf("ec2sim: instance id %q: want i- and 8 or 17 hex digits", spec.ID)
	}
	if !s.hasAZ(spec.AZ) {
		return fmt.Errorf("ec2sim: instance %s: availability zone %q is not one of %v", spec.ID, spec.AZ, s.cfg.AZs)
	}
	if spec.Type == "" {
		spec.Type = "t3.medium"
	}
	if _, ok := instanceTypes[spec.Type]; !ok {
		return fmt.Errorf("ec2sim: instance %s: type %q has no documented attachment limit here (known: %s)", spec.ID, spec.Type, knownInstanceTypes())
	}
	if spec.NetworkInterfaces <= 0 {
		spec.NetworkInterfaces = 1
	}
	if spec.ImageID == "" {
		spec.ImageID = "ami-0123456789abcdef0"
	}
	if spec.RootDevice == "" {
		spec.RootDevice = "/dev/xvda"
	}
	if spec.RootVolumeGiB <= 0 {
		spec.RootVolumeGiB = 30
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instances[spec.ID] != nil {
		return fmt.Errorf("ec2sim: instance %s already exists", spec.ID)
	}
	tags := map[string]string{}
	for k, v := range spec.Tags {
		tags[k] = v
	}
	in := &instance{
		id: spec.ID, az: spec.AZ, typ: spec.Type, image: spec.ImageID, rootDevice: spec.RootDevice,
		privateIP: spec.PrivateIP, host: spec.Host, state: "pending", launched: time.Now(), seq: s.nextSeq(),
		reservation: s.newID("r", func(string) bool { return false }), tags: tags,
		devices: map[string]string{}, poisoned: map[string]bool{}, networkInterfaces: spec.NetworkInterfaces,
		settled: make(chan struct{}), spot: spec.Spot,
	}
	root := &volume{id: s.newID("vol", func(id string) bool { return s.volumes[id] != nil }), az: spec.AZ, typ: "gp3",
		size: spec.RootVolumeGiB, iops: 3000, throughput: 125, snapshotID: "snap-0123456789abcdef0", state: stateInUse,
		created: in.launched, seq: s.nextSeq()}
	root.backing = filepath.Join(s.cfg.Dir, root.id+".img")
	if _, err := createSparse(root.backing, int64(root.size)*gib); err != nil {
		return fmt.Errorf("ec2sim: root volume of %s: %w", spec.ID, err)
	}
	root.att = &attachment{instanceID: spec.ID, device: spec.RootDevice, state: attAttached, at: in.launched,
		deleteOnTermination: true, gen: 1, wake: make(chan struct{}, 1)}
	s.volumes[root.id] = root
	in.devices[spec.RootDevice] = root.id
	s.instances[spec.ID] = in
	s.instanceEventLocked(in)
	in.state = "running"
	s.instanceEventLocked(in)
	return nil
}

// SetNetworkInterfaces sets how many network interfaces the instance has
// attached, the primary one included (an awsvpc task's ENI is one more).
func (s *Server) SetNetworkInterfaces(id string, n int) error {
	return s.withInstance(id, func(in *instance) error {
		if n < 1 {
			return fmt.Errorf("ec2sim: %d network interfaces: every instance has its primary one", n)
		}
		in.networkInterfaces = n
		return nil
	})
}

// InstanceState returns the instance's state name (running, terminated...).
func (s *Server) InstanceState(id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return "", fmt.Errorf("ec2sim: %w", errInstanceNotFound(id))
	}
	return in.state, nil
}

// RebootInstance frees device names a force detach left unusable.
func (s *Server) RebootInstance(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil {
		return fmt.Errorf("ec2sim: %w", errInstanceNotFound(id))
	}
	in.poisoned = map[string]bool{}
	return nil
}

// SetDeleteOnTermination sets the flag on the volume's current attachment
// (what ModifyInstanceAttribute's BlockDeviceMapping does).
func (s *Server) SetDeleteOnTermination(volumeID string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[volumeID]
	if v == nil || v.att == nil {
		return fmt.Errorf("ec2sim: volume %s is not attached", volumeID)
	}
	v.att.deleteOnTermination = on
	return nil
}

func instanceFilters() map[string]bool {
	return map[string]bool{
		"instance-id": true, "instance-state-name": true, "instance-state-code": true, "availability-zone": true, "instance-type": true,
		"block-device-mapping.volume-id": true, "tag-key": true, "tag-value": true,
	}
}

func (s *Server) instanceXML(in *instance) xmlInstance {
	x := xmlInstance{InstanceID: in.id, ImageID: in.image,
		State:        xmlInstanceState{Code: instanceStateCode(in.state), Name: in.state},
		InstanceType: in.typ, LaunchTime: ts(in.launched), PrivateIP: in.privateIP, Architecture: "x86_64",
		RootDeviceType: "ebs", RootDeviceName: in.rootDevice, VirtualizationType: "hvm", Tags: tagSet(in.tags),
		Hypervisor: "nitro"}
	x.Placement.AvailabilityZone, x.Placement.Tenancy = in.az, "default"
	x.Monitoring.State = "disabled"
	if in.spot {
		x.InstanceLifecycle = "spot"
	}
	if in.state == "stopped" || in.state == "terminated" {
		x.Reason = in.stateReason
		x.StateReason = stateReasonXML(in.reasonCode)
	}
	devs := make([]string, 0, len(in.devices))
	for d := range in.devices {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	x.BlockDevices.Items = []xmlBlockDevice{}
	for _, d := range devs {
		v := s.volumes[in.devices[d]]
		if v == nil || v.att == nil {
			continue
		}
		x.BlockDevices.Items = append(x.BlockDevices.Items, xmlBlockDevice{DeviceName: d, EBS: xmlEBSDevice{
			VolumeID: v.id, Status: v.att.state, AttachTime: ts(v.att.at), DeleteOnTermination: v.att.deleteOnTermination}})
	}
	return x
}

func (s *Server) describeInstances(_ context.Context, form url.Values) (any, error) {
	ids := awsproto.List(form, "InstanceId")
	filters, err := parseFilters(form, instanceFilters())
	if err != nil {
		return nil, err
	}
	if err := instancePager().check(form, ids); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.instances[id] == nil {
			return nil, errInstanceNotFound(id)
		}
	}
	var list []*instance
	for _, in := range s.instances {
		if len(ids) > 0 && !slices.Contains(ids, in.id) {
			continue
		}
		field := func(name string) []string {
			switch name {
			case "instance-id":
				return []string{in.id}
			case "instance-state-name":
				return []string{in.state}
			case "instance-state-code":
				return []string{strconv.Itoa(int(instanceStateCode(in.state)))}
			case "availability-zone":
				return []string{in.az}
			case "instance-type":
				return []string{in.typ}
			case "block-device-mapping.volume-id":
				var out []string
				for _, vid := range in.devices {
					out = append(out, vid)
				}
				return out
			}
			return nil
		}
		if matches(filters, in.tags, field) {
			list = append(list, in)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	start, end, next, err := instancePager().apply(form, ids, len(list),
		func(i int) int64 { return list[i].seq })
	if err != nil {
		return nil, err
	}
	out := &describeInstancesResponse{NextToken: next}
	out.Reservations.Items = []xmlReservation{}
	for _, in := range list[start:end] {
		r := xmlReservation{ReservationID: in.reservation, OwnerID: s.cfg.Account}
		r.Instances.Items = []xmlInstance{s.instanceXML(in)}
		out.Reservations.Items = append(out.Reservations.Items, r)
	}
	return out, nil
}

func zoneFilters() map[string]bool {
	return map[string]bool{"zone-name": true, "zone-id": true, "state": true, "region-name": true, "zone-type": true}
}

// zoneID makes AWS's account-independent zone id: usw2-az1 for us-west-2a.
func (s *Server) zoneID(i int) string {
	parts := strings.Split(s.cfg.Region, "-")
	short := ""
	for j, p := range parts {
		if j == len(parts)-1 {
			short += p
		} else if p != "" {
			short += p[:1]
		}
	}
	if len(parts) > 0 {
		short = parts[0] + short[1:]
	}
	return fmt.Sprintf("%s-az%d", short, i+1)
}

func (s *Server) describeAvailabilityZones(_ context.Context, form url.Values) (any, error) {
	names, zids := awsproto.List(form, "ZoneName"), awsproto.List(form, "ZoneId")
	filters, err := parseFilters(form, zoneFilters())
	if err != nil {
		return nil, err
	}
	out := &describeZonesResponse{}
	out.Zones.Items = []xmlZone{}
	found := map[string]bool{}
	for i, az := range s.cfg.AZs {
		z := xmlZone{ZoneName: az, ZoneState: "available", RegionName: s.cfg.Region, ZoneID: s.zoneID(i),
			ZoneType: "availability-zone", OptInStatus: "opt-in-not-required", GroupName: s.cfg.Region,
			NetworkBorderGroup: s.cfg.Region}
		if (len(names) > 0 && !slices.Contains(names, az)) || (len(zids) > 0 && !slices.Contains(zids, z.ZoneID)) {
			continue
		}
		field := func(name string) []string {
			switch name {
			case "zone-name":
				return []string{z.ZoneName}
			case "zone-id":
				return []string{z.ZoneID}
			case "state":
				return []string{z.ZoneState}
			case "region-name":
				return []string{z.RegionName}
			case "zone-type":
				return []string{z.ZoneType}
			}
			return nil
		}
		if matches(filters, nil, field) {
			found[az], found[z.ZoneID] = true, true
			out.Zones.Items = append(out.Zones.Items, z)
		}
	}
	for _, n := range append(names, zids...) {
		if !found[n] && len(filters) == 0 {
			return nil, errInvalidValue("The zone '%s' does not exist.", n)
		}
	}
	return out, nil
}

func instancePager() pager { return pager{minMax: 5, capMax: 1000, idParam: "InstanceId"} }
