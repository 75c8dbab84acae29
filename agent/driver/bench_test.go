package driver_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkContainerStart measures `docker run --rm busybox true` with a
// tether volume against the same with a `local` volume, interleaved in one
// run on one sandbox machine so that both see the same load, and reports
// the ratio of the medians (goal: at most 1.05).
//
//	go test -run '^$' -bench ContainerStart -benchtime 20x ./agent/driver/
//
// attached: the EBS volume is attached and was mounted before, but no
// container holds it, so every start remounts it through the binding (and
// every stop unmounts and flushes it): the steady state of a task restarted
// on the same instance. mounted: another container holds the volume, so a
// start only counts a user: the plugin protocol's own cost.
func BenchmarkContainerStart(b *testing.B) {
	m := newMachine(b, "i-bench")
	const vol = "vol-0bbbbbbbbbbbbbbb1"
	m.mustDocker("volume", "create", "localvol")
	m.mustDocker("volume", "create", "-d", "tether", "-o", "size=1", "tethervol")
	m.attach(vol)
	m.tetherMount(vol, "tethervol")
	run := func(volume string) time.Duration {
		start := time.Now()
		m.mustDocker("run", "--rm", "--network", "none", "-v", volume+":/data", "busybox", "true")
		return time.Since(start)
	}
	// Warm both paths (image layers, plugin activation) before measuring.
	run("localvol")
	run("tethervol")

	b.Run("attached", func(b *testing.B) {
		compare(b, m.with(b), run)
	})
	b.Run("mounted", func(b *testing.B) {
		m := m.with(b)
		m.runHolding("holder", "tethervol")
		defer m.mustDocker("rm", "-f", "holder")
		compare(b, m, run)
	})
}

func compare(b *testing.B, m *machine, run func(volume string) time.Duration) {
	logStart := len(m.pluginDurations())
	var local, tether []time.Duration
	for i := 0; i < b.N; i++ {
		// Alternate which goes first, so neither always follows the other.
		if i%2 == 0 {
			local = append(local, run("localvol"))
			tether = append(tether, run("tethervol"))
		} else {
			tether = append(tether, run("tethervol"))
			local = append(local, run("localvol"))
		}
	}
	l, t := median(local), median(tether)
	// Paired differences cancel the drift of a shared machine's load.
	deltas := make([]time.Duration, len(local))
	for i := range local {
		deltas[i] = tether[i] - local[i]
	}
	delta := median(deltas)
	b.ReportMetric(float64(l.Microseconds())/1000, "local-ms")
	b.ReportMetric(float64(t.Microseconds())/1000, "tether-ms")
	b.ReportMetric(float64(t)/float64(l), "ratio")
	b.ReportMetric(float64(delta.Microseconds())/1000, "paired-delta-ms")
	// The fastest runs are the least disturbed by other load on the box.
	b.ReportMetric(float64(slices.Min(tether))/float64(slices.Min(local)), "min-ratio")
	b.Log(fmt.Sprintf("n=%d local median %s, tether median %s, ratio %.3f, median paired difference %s",
		b.N, l, t, float64(t)/float64(l), delta))
	// Where tether's time goes: the plugin's own time per call.
	perMethod := map[string][]time.Duration{}
	for _, c := range m.pluginDurations()[logStart:] {
		if c.volume == "tethervol" {
			perMethod[c.method] = append(perMethod[c.method], c.took)
		}
	}
	for _, method := range []string{"VolumeDriver.Mount", "VolumeDriver.Unmount", "VolumeDriver.Get"} {
		if d := perMethod[method]; len(d) > 0 {
			b.ReportMetric(float64(median(d).Microseconds())/1000, strings.TrimPrefix(method, "VolumeDriver.")+"-ms")
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
