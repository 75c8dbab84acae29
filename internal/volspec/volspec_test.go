package volspec

import (
	"strings"
	"testing"
	"time"
)

func TestValidateVolumeID(t *testing.T) {
	for _, ok := range []string{"vol-0123abcd", "vol-0123456789abcdef0"} {
		if err := ValidateVolumeID(ok); err != nil {
			t.Errorf("ValidateVolumeID(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "vol-", "vol-0123abc", "vol-0123456789abcdef01", "vol-0123ABCD", "vol-0123abcd;rm -rf /", "VOL-0123abcd", " vol-0123abcd", "vol-0123abcd\n"} {
		if err := ValidateVolumeID(bad); err == nil {
			t.Errorf("ValidateVolumeID(%q) = nil, want error", bad)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"rexray-vol", "a", "ecs-mysql-3-data-d2b1c9e8f0a1b2c3d4e5", "v1.2_x"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "..", "a..b", "a/b", "../etc", "-x", ".x", "a b", "a;b", "a$(id)", "a`id`", "a\nb", "a|b", strings.Repeat("a", 256), "é"} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) = nil, want error", bad)
		}
	}
}

func TestParseDriverOptsSeed(t *testing.T) {
	// The seed's task definition, unchanged but for the driver.
	o, err := ParseDriverOpts(map[string]string{"volumetype": "gp2", "size": "5"})
	if err != nil {
		t.Fatal(err)
	}
	want := Options{SizeGiB: 5, VolumeType: "gp2", Encrypted: true, FSType: "ext4"}
	if o != want {
		t.Fatalf("got %+v, want %+v", o, want)
	}
}

func TestParseDriverOptsDefaultsAndAliases(t *testing.T) {
	o, err := ParseDriverOpts(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.SizeGiB != 16 || o.VolumeType != "gp3" || !o.Encrypted || o.FSType != "ext4" {
		t.Fatalf("defaults: got %+v", o)
	}
	o, err = ParseDriverOpts(map[string]string{"volumeType": "io2", "IOPS": "4000", "Size": "100", "fsType": "XFS", "encryptionKey": "alias/tether", "snapshotID": "snap-0123456789abcdef0"})
	if err != nil {
		t.Fatal(err)
	}
	want := Options{SizeGiB: 100, VolumeType: "io2", IOPS: 4000, Encrypted: true, KMSKeyID: "alias/tether", FSType: "xfs", SnapshotID: "snap-0123456789abcdef0"}
	if o != want {
		t.Fatalf("got %+v, want %+v", o, want)
	}
}

func TestParseDriverOptsErrorsNameTheOption(t *testing.T) {
	cases := []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"colour": "blue"}, `"colour"`},
		{map[string]string{"size": "0"}, "size"},
		{map[string]string{"size": "5GiB"}, "size"},
		{map[string]string{"size": "99999999999"}, "size"},
		{map[string]string{"volumetype": "gp9"}, "volumetype"},
		{map[string]string{"volumetype": "gp2", "iops": "3000"}, "iops"},
		{map[string]string{"volumetype": "io1", "size": "10"}, "iops"},
		{map[string]string{"volumetype": "gp3", "throughput": "5000"}, "throughput"},
		{map[string]string{"volumetype": "st1", "size": "5"}, "size"},
		{map[string]string{"encrypted": "maybe"}, "encrypted"},
		{map[string]string{"encrypted": "false", "kmskeyid": "alias/x"}, "kmskeyid"},
		{map[string]string{"kmskeyid": "alias/x; rm -rf /"}, "kmskeyid"},
		{map[string]string{"fstype": "btrfs"}, "fstype"},
		{map[string]string{"snapshotid": "snap-xyz"}, "snapshotid"},
		{map[string]string{"type": "gp2", "volumetype": "gp3"}, "volumetype"},
		{map[string]string{"azmove": "snapshot", "azmove-delete-after": "soon"}, "azmove-delete-after"},
		{map[string]string{"azmove": "snapshot", "azmove-delete-after": "24"}, "azmove-delete-after"},
		{map[string]string{"azmove": "snapshot", "azmove-delete-after": "59m"}, "1h0m0s to 8760h0m0s"},
		{map[string]string{"azmove": "snapshot", "azmove-delete-after": "8761h"}, "azmove-delete-after"},
		{map[string]string{"azmove": "snapshot", "azmove-delete-after": "-24h"}, "azmove-delete-after"},
		{map[string]string{"azmove": "snapshot", "azmove-delete-after": "0"}, "azmove-delete-after"},
		{map[string]string{"azmove-delete-after": "24h"}, "needs azmove=snapshot"},
	}
	for _, c := range cases {
		_, err := ParseDriverOpts(c.opts)
		if err == nil {
			t.Errorf("ParseDriverOpts(%v) = nil error, want one naming %s", c.opts, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseDriverOpts(%v) = %q, want it to name %s", c.opts, err, c.want)
		}
	}
}

func TestValidateDeviceName(t *testing.T) {
	for _, ok := range []string{"/dev/xvdf", "/dev/sdf", "/dev/xvdba", "/dev/xvdz", "/dev/xvdaa", "/dev/xvdcz", "/dev/xvdda", "/dev/xvddx", "/dev/sdb", "/dev/sdz"} {
		if err := ValidateDeviceName(ok); err != nil {
			t.Errorf("ValidateDeviceName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "/dev/xvda", "/dev/sda", "/dev/sda1", "/dev/nvme1n1", "/dev/xvdf;id", "xvdf", "/dev/xvdabc", "/dev/../xvdf",
		// EC2 refuses two-letter names past xvddx, and two-letter sd names.
		"/dev/xvddy", "/dev/xvdza", "/dev/xvdea", "/dev/sdba"} {
		if err := ValidateDeviceName(bad); err == nil {
			t.Errorf("ValidateDeviceName(%q) = nil, want error", bad)
		}
	}
}

func TestTaskVolumeNames(t *testing.T) {
	arn := "arn:aws:ecs:us-east-1:123456789012:task/c1/0123456789abcdef0123456789abcdef"
	name := TaskVolumeName(arn, "scratch")
	if name != "task-0123456789abcdef0123456789abcdef-scratch" {
		t.Fatalf("TaskVolumeName = %q", name)
	}
	id, vol, ok := ParseTaskVolumeName(name)
	if !ok || id != "0123456789abcdef0123456789abcdef" || vol != "scratch" {
		t.Fatalf("ParseTaskVolumeName(%q) = %q, %q, %v", name, id, vol, ok)
	}
	for _, shared := range []string{"rexray-vol", "task-x-y", "task-0123-scratch"} {
		if _, _, ok := ParseTaskVolumeName(shared); ok {
			t.Errorf("ParseTaskVolumeName(%q) took a shared name for a task-scoped one", shared)
		}
	}
}

func TestDeploymentDefaults(t *testing.T) {
	d := Defaults{SizeGiB: 500, VolumeType: "st1", KMSKeyID: "alias/tether"}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	o, err := ParseDriverOptsWith(nil, d)
	if err != nil || o.SizeGiB != 500 || o.VolumeType != "st1" || o.KMSKeyID != "alias/tether" || !o.Encrypted {
		t.Fatalf("defaults alone = %+v, %v", o, err)
	}
	// What driverOpts say wins; the default key is not used for an
	// unencrypted volume, nor when driverOpts name a key.
	o, err = ParseDriverOptsWith(map[string]string{"size": "20", "volumetype": "gp3", "encrypted": "false"}, d)
	if err != nil || o.SizeGiB != 20 || o.VolumeType != "gp3" || o.KMSKeyID != "" || o.Encrypted {
		t.Fatalf("driverOpts over defaults = %+v, %v", o, err)
	}
	o, err = ParseDriverOptsWith(map[string]string{"kmskeyid": "alias/other", "size": "200"}, d)
	if err != nil || o.KMSKeyID != "alias/other" {
		t.Fatalf("driverOpts' key = %+v, %v", o, err)
	}
	// A size the default type cannot have is refused, naming the type.
	if _, err := ParseDriverOptsWith(map[string]string{"size": "16"}, d); err == nil || !strings.Contains(err.Error(), "st1") {
		t.Fatalf("16 GiB st1 = %v, want a refusal naming st1", err)
	}
	for _, bad := range []Defaults{{SizeGiB: 16, VolumeType: "st1"}, {SizeGiB: 0, VolumeType: "gp3"}, {SizeGiB: 16, VolumeType: "gp9"}, {SizeGiB: 16, VolumeType: "gp3", KMSKeyID: "not a key"}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("defaults %+v accepted", bad)
		}
	}
	if err := Builtin().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestReplicas(t *testing.T) {
	o, err := ParseDriverOpts(map[string]string{"Replicas": "true"})
	if err != nil || !o.Replicas {
		t.Fatalf("replicas=true: %+v, %v", o, err)
	}
	if _, err := ParseDriverOpts(map[string]string{"replicas": "maybe"}); err == nil {
		t.Fatal("replicas=maybe accepted")
	}
	for name, want := range map[string]int{"db-0": 0, "db-12": 12, "a-b-999": 999} {
		if _, n, ok := ParseReplicaName(name); !ok || n != want {
			t.Errorf("ParseReplicaName(%q) = %d, %v; want %d", name, n, ok, want)
		}
	}
	for _, name := range []string{"db", "db-", "-1", "db-01", "db-1000", "db-x", "db-+1"} {
		if b, n, ok := ParseReplicaName(name); ok {
			t.Errorf("ParseReplicaName(%q) = %q %d, want not a replica name", name, b, n)
		}
	}
	if b, n, ok := ParseReplicaName(ReplicaName("db", 7)); !ok || b != "db" || n != 7 {
		t.Errorf("round trip: %q %d %v", b, n, ok)
	}
	if err := ValidateReplicaBase(strings.Repeat("a", MaxNameLength-3)); err == nil {
		t.Error("a base whose replica names are too long accepted")
	}
}

// azmove-delete-after: a Go duration of 1h to 8760h, only beside
// azmove=snapshot; left out, the old volume of a move is never deleted.
func TestAZMoveDeleteAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{"24h": 24 * time.Hour, "1h": time.Hour, "8760h": 8760 * time.Hour, " 90m ": 90 * time.Minute, "168h0m0s": 168 * time.Hour} {
		o, err := ParseDriverOpts(map[string]string{"azmove": "snapshot", "AZMove-Delete-After": in})
		if err != nil || o.AZMoveDeleteAfter != want || o.AZMove != AZMoveSnapshot {
			t.Errorf("azmove-delete-after=%q: %+v, %v; want %s", in, o, err, want)
		}
	}
	o, err := ParseDriverOpts(map[string]string{"azmove": "snapshot"})
	if err != nil || o.AZMoveDeleteAfter != 0 {
		t.Errorf("azmove alone: %+v, %v; want no deletion (0)", o, err)
	}
	// The reconciler reads its tag back with the same bounds.
	for _, bad := range []string{"", "1s", "59m59s", "8760h1s", "forever"} {
		if d, err := ParseAZMoveDeleteAfter(bad); err == nil {
			t.Errorf("ParseAZMoveDeleteAfter(%q) = %s, want an error", bad, d)
		}
	}
}
