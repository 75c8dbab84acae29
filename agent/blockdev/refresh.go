package blockdev

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RefreshSize makes the kernel read again the size of a volume's device
// whose volume may have grown (Elastic Volumes), where it must be told:
//   - a loop device (the local world's stand-in for an EBS volume, taken
//     only with AllowLoop) learns that its backing file grew only from
//     LOOP_SET_CAPACITY (what `losetup -c` does), which is safe while
//     the device is open and mounted;
//   - an NVMe namespace (Nitro) is resized by the kernel itself when the
//     controller reports the namespace changed, and a Xen device when its
//     backend does (EBS user guide, "Extend the file system after resizing
//     an EBS volume": lsblk shows the new size without any step), so
//     nothing is asked of them.
//
// It never changes the device's contents; the caller reads the size after.
func (f Finder) RefreshSize(path string) error {
	if kindOf(filepath.Base(path)) != "loop" || !f.AllowLoop {
		return nil
	}
	dev, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("refresh the size of %s: %w", path, err)
	}
	defer dev.Close()
	if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("refresh the size of %s (LOOP_SET_CAPACITY): %w", path, err)
	}
	return nil
}
