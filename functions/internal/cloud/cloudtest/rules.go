package cloudtest

import (
	"regexp"
	"strings"
)

// EBS's per-volume-type rules, which EC2 checks on CreateVolume and which
// botocore's model does not carry. Sources: the EC2 API reference,
// CreateVolume (Size: gp2 1-16,384 GiB, gp3 1-65,536, io1 4-16,384, io2
// 4-65,536, st1/sc1 125-16,384, standard 1-1,024; Iops: gp3
// 3,000-80,000, io1 100-64,000, io2 100-256,000, required for io1 and
// io2, not supported for the others; Throughput: gp3 only, 125-2,000
// MiB/s; MultiAttachEnabled: io1 and io2 only); the EBS user guide,
// "General Purpose SSD volumes" (gp3: at most 500 IOPS per GiB and 0.25
// MiB/s per IOPS) and "Provisioned IOPS SSD volumes" (io1 50 IOPS per
// GiB, io2 1,000). The local world (test/world/ec2sim rules.go) applies
// the same rules; the conformance table holds the two together.
type typeRule struct {
	minSize, maxSize int32
	iops             string // "none", "optional" (gp3), "required" (io1, io2)
	minIOPS, maxIOPS int32
	iopsPerGiB       int32 // the highest ratio, 0: none
	defaultIOPS      int32
	throughput       bool // gp3 only
	minTput, maxTput int32
	defaultTput      int32
	multiAttach      bool
}

var typeRules = map[string]typeRule{
	"gp2": {minSize: 1, maxSize: 16384, iops: "none"},
	"gp3": {minSize: 1, maxSize: 65536, iops: "optional", minIOPS: 3000, maxIOPS: 80000, iopsPerGiB: 500, defaultIOPS: 3000,
		throughput: true, minTput: 125, maxTput: 2000, defaultTput: 125},
	"io1":      {minSize: 4, maxSize: 16384, iops: "required", minIOPS: 100, maxIOPS: 64000, iopsPerGiB: 50, multiAttach: true},
	"io2":      {minSize: 4, maxSize: 65536, iops: "required", minIOPS: 100, maxIOPS: 256000, iopsPerGiB: 1000, multiAttach: true},
	"st1":      {minSize: 125, maxSize: 16384, iops: "none"},
	"sc1":      {minSize: 125, maxSize: 16384, iops: "none"},
	"standard": {minSize: 1, maxSize: 1024, iops: "none"},
}

// volumeShape is what a CreateVolume asks for; iops and throughput are nil
// when not given.
type volumeShape struct {
	typ              string
	size             int32
	iops, throughput *int32
	multiAttach      bool
}

// resolve checks the shape against EBS's rules and returns the IOPS and
// throughput DescribeVolumes reports (gp2's baseline of 3 IOPS per GiB,
// 100 to 16,000; 0 where the type has none). EC2's wording, where public
// bug reports show it: "The parameter iops is not supported for gp2
// volumes.", "Volume of 2000GiB is too large for volume type standard;
// maximum is 1024GiB", "Throughput (MiBps) to iops ratio of 0.333333 is
// too high; maximum is 0.250000 MiBps per iops".
func (s volumeShape) resolve() (iops, throughput int32, err error) {
	r, ok := typeRules[s.typ]
	if !ok {
		return 0, 0, apiErr("InvalidParameterValue", "Value (%s) for parameter volumeType is invalid. Valid types: standard | io1 | io2 | gp2 | sc1 | st1 | gp3", s.typ)
	}
	switch {
	case s.size < r.minSize:
		return 0, 0, apiErr("InvalidParameterValue", "Volume of %dGiB is too small for volume type %s; minimum is %dGiB", s.size, s.typ, r.minSize)
	case s.size > r.maxSize:
		return 0, 0, apiErr("InvalidParameterValue", "Volume of %dGiB is too large for volume type %s; maximum is %dGiB", s.size, s.typ, r.maxSize)
	case s.multiAttach && !r.multiAttach:
		return 0, 0, apiErr("InvalidParameterCombination", "Multi-Attach is not supported for %s volumes; it is supported for io1 and io2 volumes only.", s.typ)
	}
	switch r.iops {
	case "none":
		if s.iops != nil {
			return 0, 0, apiErr("InvalidParameterCombination", "The parameter iops is not supported for %s volumes.", s.typ)
		}
		if s.typ == "gp2" {
			iops = min(max(3*s.size, 100), 16000)
		}
	case "required":
		if s.iops == nil {
			return 0, 0, apiErr("InvalidParameterCombination", "The parameter iops must be specified for %s volumes.", s.typ)
		}
		iops = *s.iops
	case "optional":
		iops = r.defaultIOPS
		if s.iops != nil {
			iops = *s.iops
		}
	}
	if r.iops != "none" {
		switch {
		case iops < r.minIOPS:
			return 0, 0, apiErr("InvalidParameterValue", "Volume iops of %d is too low; minimum is %d.", iops, r.minIOPS)
		case iops > r.maxIOPS:
			return 0, 0, apiErr("InvalidParameterValue", "Volume iops of %d is too high; maximum is %d.", iops, r.maxIOPS)
		// The type's minimum is always allowed (a 1 GiB gp3 volume has
		// 3,000 IOPS); above it, the per-GiB ratio applies.
		case r.iopsPerGiB > 0 && iops > r.minIOPS && iops > r.iopsPerGiB*s.size:
			return 0, 0, apiErr("InvalidParameterValue", "Iops to volume size ratio of %f is too high; maximum is %d", float64(iops)/float64(s.size), r.iopsPerGiB)
		}
	}
	if !r.throughput {
		if s.throughput != nil {
			return 0, 0, apiErr("InvalidParameterCombination", "throughput can only be specified for volumeType gp3.")
		}
		return iops, 0, nil
	}
	throughput = r.defaultTput
	if s.throughput != nil {
		throughput = *s.throughput
	}
	switch {
	case throughput < r.minTput:
		return 0, 0, apiErr("InvalidParameterValue", "Volume throughput of %d MiBps is too low; minimum is %d MiBps.", throughput, r.minTput)
	case throughput > r.maxTput:
		return 0, 0, apiErr("InvalidParameterValue", "Volume throughput of %d MiBps is too high; maximum is %d MiBps.", throughput, r.maxTput)
	case float64(throughput) > 0.25*float64(iops):
		return 0, 0, apiErr("InvalidParameterValue", "Throughput (MiBps) to iops ratio of %f is too high; maximum is 0.250000 MiBps per iops",
			float64(throughput)/float64(iops))
	}
	return iops, throughput, nil
}

// maxTags is EC2's limit per resource (EC2 user guide, "Tag restrictions").
const maxTags = 50

// checkTag applies EC2's tag restrictions (EC2 user guide, "Tag
// restrictions": keys 1-128 characters, values up to 256, the aws: prefix
// reserved).
func checkTag(key, value string) error {
	switch {
	case key == "":
		return apiErr("InvalidParameterValue", "Tag key must not be empty")
	case len(key) > 128:
		return apiErr("InvalidParameterValue", "Tag key exceeds the maximum length of 128 characters")
	case len(value) > 256:
		return apiErr("InvalidParameterValue", "Tag value exceeds the maximum length of 256 characters")
	case strings.HasPrefix(strings.ToLower(key), "aws:"):
		return apiErr("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
	}
	return nil
}

// wildcard compiles an EC2 filter value: * any run of characters, ? one
// character, \ escapes the next one (EC2 API reference, Filter).
func wildcard(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?s)^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '*':
			b.WriteString(".*")
		case c == '?':
			b.WriteString(".")
		case c == '\\' && i+1 < len(pattern):
			i++
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		default:
			b.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
