package ec2sim

// EBS's per-type rules, which botocore's model does not carry (it types
// Size, Iops and Throughput as plain integers). Sources:
//   - sizes, IOPS and throughput ranges: the EC2 API reference for
//     CreateVolume and ModifyVolume (Size: gp2 1-16,384 GiB, gp3 1-65,536,
//     io1 4-16,384, io2 4-65,536, st1/sc1 125-16,384, standard 1-1,024;
//     Iops: gp3 3,000-80,000, io1 100-64,000, io2 100-256,000, required for
//     io1 and io2, omitted for the other types; Throughput: gp3 only,
//     125-2,000 MiB/s), as shipped in botocore 1.43's ec2 service-2.json;
//   - ratios: EBS user guide, "General Purpose SSD volumes" (gp3: at most
//     500 IOPS per GiB, at most 0.25 MiB/s of throughput per provisioned
//     IOPS) and "Provisioned IOPS SSD volumes" (io1: 50 IOPS per GiB, io2
//     Block Express: 1,000 IOPS per GiB);
//   - gp2's reported IOPS: 3 per GiB, at least 100, at most 16,000 (EBS
//     user guide, gp2);
//   - Multi-Attach: io1 and io2 only (CreateVolume, MultiAttachEnabled).
//
// Error wording, where a real answer was found in public bug reports:
// "The parameter iops is not supported for gp2 volumes." and "The parameter
// iops must be specified for io2 volumes." (InvalidParameterCombination);
// "throughput can only be specified for volumeType gp3."
// (InvalidParameterCombination); "Volume of 2000GiB is too large for volume
// type standard; maximum is 1024GiB", "Iops to volume size ratio of
// 750.000000 is too high; maximum is 500" and "Throughput (MiBps) to iops
// ratio of 0.333333 is too high; maximum is 0.250000 MiBps per iops"
// (InvalidParameterValue). The others follow the same pattern.

type typeRule struct {
	minSize, maxSize  int32
	iops              string // "none", "optional" (gp3), "required" (io1, io2)
	minIops, maxIops  int32
	iopsPerGiB        int32 // maximum ratio, 0: none
	defaultIops       int32
	throughput        bool
	defaultThroughput int32
	minThrput, maxThp int32
	multiAttach       bool
}

func ruleFor(typ string) (typeRule, bool) {
	switch typ {
	case "gp2":
		return typeRule{minSize: 1, maxSize: 16384, iops: "none"}, true
	case "gp3":
		return typeRule{minSize: 1, maxSize: 65536, iops: "optional", minIops: 3000, maxIops: 80000,
			iopsPerGiB: 500, defaultIops: 3000, throughput: true, defaultThroughput: 125, minThrput: 125, maxThp: 2000}, true
	case "io1":
		return typeRule{minSize: 4, maxSize: 16384, iops: "required", minIops: 100, maxIops: 64000, iopsPerGiB: 50, multiAttach: true}, true
	case "io2":
		return typeRule{minSize: 4, maxSize: 65536, iops: "required", minIops: 100, maxIops: 256000, iopsPerGiB: 1000, multiAttach: true}, true
	case "st1", "sc1":
		return typeRule{minSize: 125, maxSize: 16384, iops: "none"}, true
	case "standard":
		return typeRule{minSize: 1, maxSize: 1024, iops: "none"}, true
	}
	return typeRule{}, false
}

// volumeShape is what a create or modify asks for; hasIops/hasThroughput
// say whether the caller gave them.
type volumeShape struct {
	typ                    string
	size                   int32
	iops, throughput       int32
	hasIops, hasThroughput bool
	multiAttach            bool
}

// resolve checks s against EBS's rules and fills in the defaults: the
// returned iops/throughput are what DescribeVolumes reports (gp2's
// baseline; 0 where the type has none).
func (s volumeShape) resolve() (iops, throughput int32, err error) {
	r, ok := ruleFor(s.typ)
	if !ok {
		return 0, 0, errInvalidValue("Value (%s) for parameter volumeType is invalid. Valid types: standard | io1 | io2 | gp2 | sc1 | st1 | gp3", s.typ)
	}
	if s.size < r.minSize {
		return 0, 0, errInvalidValue("Volume of %dGiB is too small for volume type %s; minimum is %dGiB", s.size, s.typ, r.minSize)
	}
	if s.size > r.maxSize {
		return 0, 0, errInvalidValue("Volume of %dGiB is too large for volume type %s; maximum is %dGiB", s.size, s.typ, r.maxSize)
	}
	if s.multiAttach && !r.multiAttach {
		return 0, 0, errCombination("Multi-Attach is not supported for %s volumes; it is supported for io1 and io2 volumes only.", s.typ)
	}
	switch r.iops {
	case "none":
		if s.hasIops {
			return 0, 0, errCombination("The parameter iops is not supported for %s volumes.", s.typ)
		}
		if s.typ == "gp2" {
			iops = min(max(3*s.size, 100), 16000)
		}
	case "required":
		if !s.hasIops {
			return 0, 0, errCombination("The parameter iops must be specified for %s volumes.", s.typ)
		}
		iops = s.iops
	case "optional":
		iops = r.defaultIops
		if s.hasIops {
			iops = s.iops
		}
	}
	if r.iops != "none" {
		if iops < r.minIops {
			return 0, 0, errInvalidValue("Volume iops of %d is too low; minimum is %d.", iops, r.minIops)
		}
		if iops > r.maxIops {
			return 0, 0, errInvalidValue("Volume iops of %d is too high; maximum is %d.", iops, r.maxIops)
		}
		// The type's minimum IOPS is always allowed (a 1 GiB gp3 volume has
		// 3,000 IOPS); above it the per-GiB ratio applies.
		if r.iopsPerGiB > 0 && iops > r.minIops && iops > r.iopsPerGiB*s.size {
			return 0, 0, errInvalidValue("Iops to volume size ratio of %f is too high; maximum is %d",
				float64(iops)/float64(s.size), r.iopsPerGiB)
		}
	}
	if !r.throughput {
		if s.hasThroughput {
			return 0, 0, errCombination("throughput can only be specified for volumeType gp3.")
		}
		return iops, 0, nil
	}
	throughput = r.defaultThroughput
	if s.hasThroughput {
		throughput = s.throughput
	}
	if throughput < r.minThrput {
		return 0, 0, errInvalidValue("Volume throughput of %d MiBps is too low; minimum is %d MiBps.", throughput, r.minThrput)
	}
	if throughput > r.maxThp {
		return 0, 0, errInvalidValue("Volume throughput of %d MiBps is too high; maximum is %d MiBps.", throughput, r.maxThp)
	}
	if float64(throughput) > 0.25*float64(iops) {
		return 0, 0, errInvalidValue("Throughput (MiBps) to iops ratio of %f is too high; maximum is 0.250000 MiBps per iops",
			float64(throughput)/float64(iops))
	}
	return iops, throughput, nil
}
