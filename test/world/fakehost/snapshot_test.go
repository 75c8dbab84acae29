package fakehost

import (
	"slices"
	"testing"
)

// A volume made from a snapshot holds what its source held when the
// snapshot was taken, not what it was given later.
func TestRestoreHoldsTheSnapshotsContents(t *testing.T) {
	d := NewDisks()
	d.format("vol-a", "ext4", "i-1", true)
	d.write("vol-a", "t1")
	d.unclean("vol-a")
	d.Snapshot("snap-1", "vol-a")
	d.write("vol-a", "t2") // after the snapshot
	d.Restore("vol-b", "snap-1")
	got, ok := d.Volume("vol-b")
	if !ok || got.FSType != "ext4" || got.Formats != 1 || !slices.Equal(got.Writes, []string{"t1"}) || got.Unclean != 0 ||
		got.RestoredFrom != "vol-a" || got.FromSnapshot != "snap-1" {
		t.Fatalf("restored volume %+v (known %v), want ext4, one format, history [t1], no unclean detach, from vol-a's snap-1", got, ok)
	}
	src, _ := d.Volume("vol-a")
	if got.Checksum == src.Checksum || len(src.Writes) != 2 {
		t.Fatalf("source %+v changed with the copy, or the copy with the source", src)
	}
	d.write("vol-b", "t3")
	if src, _ := d.Volume("vol-a"); len(src.Writes) != 2 {
		t.Fatalf("a write to the copy reached the source: %v", src.Writes)
	}
	d.Restore("vol-c", "snap-unknown")
	if _, ok := d.Volume("vol-c"); ok {
		t.Fatal("a snapshot no host ever saw restored contents")
	}
}
