package ec2sim

// EBS's per-type rules (EC2 API reference, CreateVolume: Size, Iops,
// Throughput; EBS user guide, "Amazon EBS volume types").

type typeRule struct {
	minSize, maxSize   int32
	iops               string // "none", "optional" (gp3), "required" (io1, io2)
	minIops, maxIops   int32
	iopsPerGiB         int32 // maximum ratio, 0: none
	defaultIops        int32
	throughput         bool
	defaultThroughput  int32
	minThrput, maxThpt int32
}

func ruleFor(typ string) (typeRule, bool) {
	switch typ {
	case "gp2":
		return typeRule{minSize: 1, maxSize: 16384, iops: "none"}, true
	case "gp3":
		return typeRule{minSize: 1, maxSize: 65536, iops: "optional", minIops: 3000, maxIops: 80000,
			iopsPerGiB: 500, defaultIops: 3000, throughput: true, defaultThroughput: 125, minThrput: 125, maxThpt: 2000}, true
	case "io1":
		return typeRule{minSize: 4, maxSize: 16384, iops: "required", minIops: 100, maxIops: 64000, iopsPerGiB: 50}, true
	case "io2":
		return typeRule{minSize: 4, maxSize: 65536, iops: "required", minIops: 100, maxIops: 256000, iopsPerGiB: 1000}, true
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
}

// resolve checks s against EBS's rules and fills in the defaults: the
// returned iops/throughput are what DescribeVolumes reports (gp2's
// baseline of 3 IOPS/GiB, 100-16,000; 0 where the type has none).
func (s volumeShape) resolve() (iops, throughput int32, err error) {
	r, ok := ruleFor(s.typ)
	if !ok {
		return 0, 0, errInvalidValue("Value (%s) for parameter volumeType is invalid. Valid types: standard | io1 | io2 | gp2 | sc1 | st1 | gp3", s.typ)
	}
	if s.size < r.minSize {
		return 0, 0, errInvalidValue("Volume of %dGiB is too small; minimum is %dGiB.", s.size, r.minSize)
	}
	if s.size > r.maxSize {
		return 0, 0, errInvalidValue("Volume of %dGiB is too large; maximum is %dGiB.", s.size, r.maxSize)
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
		if r.iopsPerGiB > 0 && iops > r.iopsPerGiB*s.size && iops > r.minIops {
			return 0, 0, errInvalidValue("Iops to volume size ratio of %f is too high; maximum is %f.",
				float64(iops)/float64(s.size), float64(r.iopsPerGiB))
		}
	}
	if !r.throughput {
		if s.hasThroughput {
			return 0, 0, errCombination("The parameter throughput is not supported for %s volumes.", s.typ)
		}
		return iops, 0, nil
	}
	throughput = r.defaultThroughput
	if s.hasThroughput {
		throughput = s.throughput
	}
	if throughput < r.minThrput || throughput > r.maxThpt {
		return 0, 0, errInvalidValue("Throughput of %d MiB/s is invalid; valid range is %d-%d MiB/s.", throughput, r.minThrput, r.maxThpt)
	}
	if float64(throughput) > 0.25*float64(iops) && throughput > r.defaultThroughput {
		return 0, 0, errInvalidValue("Throughput (MiBps) to iops ratio of %f is too high; maximum is 0.250000 MiBps per iops.",
			float64(throughput)/float64(iops))
	}
	return iops, throughput, nil
}
