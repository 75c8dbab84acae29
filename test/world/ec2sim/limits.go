package ec2sim

import (
	"sort"
	"strings"
)

// attachLimit is how many volumes an instance type takes.
//
// EC2 User Guide, "Instance volume limits" (Nitro System volume limits):
// most Nitro instances have 28 attachments, shared between network
// interfaces, EBS volumes and NVMe instance store volumes; every instance
// has at least one network interface, so an EBS-only instance with no
// further interface takes 27 EBS volumes (its root volume among them).
// Newer types (7th generation onwards) have a dedicated EBS limit that
// interfaces do not use. The figures per type are those of
// aws-ebs-csi-driver's table (pkg/cloud/limits/volume_limits_table.go,
// generated from DescribeInstanceTypes), which lists every type that
// differs from the shared 28.
type attachLimit struct {
	max           int  // attachments (shared) or EBS volumes (dedicated)
	dedicated     bool // network interfaces do not count
	instanceStore int  // NVMe instance store volumes, always attached
}

// instanceTypes are the types the world launches. A type not listed is
// refused by AddInstance rather than given a guessed limit.
var instanceTypes = map[string]attachLimit{
	// Nitro, shared limit of 28 (not in ebs-csi's table: the default).
	"t3.micro": {max: 28}, "t3.small": {max: 28}, "t3.medium": {max: 28}, "t3.large": {max: 28},
	"t3.xlarge": {max: 28}, "t3.2xlarge": {max: 28},
	"t3a.medium": {max: 28}, "t3a.large": {max: 28},
	"m5.large": {max: 28}, "m5.xlarge": {max: 28}, "m5.2xlarge": {max: 28}, "m5.4xlarge": {max: 28},
	"c5.large": {max: 28}, "c5.xlarge": {max: 28}, "c5.2xlarge": {max: 28},
	"r5.large": {max: 28}, "r5.xlarge": {max: 28},
	"m6i.large": {max: 28}, "m6i.xlarge": {max: 28}, "m6g.large": {max: 28}, "m6g.xlarge": {max: 28},
	// Nitro with NVMe instance store: 28 shared, one store volume.
	"c5d.large": {max: 28, instanceStore: 1},
	// Dedicated EBS limit of 32 (ebs-csi's table: c7i.large, m7i.large).
	"m7i.large": {max: 32, dedicated: true}, "c7i.large": {max: 32, dedicated: true},
}

func knownInstanceTypes() string {
	names := make([]string, 0, len(instanceTypes))
	for n := range instanceTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// checkAttachmentLimitLocked refuses one more EBS attachment past the
// instance type's limit (EC2 API reference, error codes:
// AttachmentLimitExceeded). Every attachment the instance holds counts,
// attaching and detaching ones too, as does its root volume. Caller holds
// s.mu.
func (s *Server) checkAttachmentLimitLocked(in *instance) error {
	lim := instanceTypes[in.typ]
	used := len(in.devices)
	if !lim.dedicated {
		used += in.networkInterfaces + lim.instanceStore
	}
	if used+1 > lim.max {
		return errAttachmentLimit()
	}
	return nil
}
