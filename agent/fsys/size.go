package fsys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DeviceSize returns the size of a block device (or image file) in bytes.
func DeviceSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	return size, nil
}

// FSSize is a filesystem's own idea of its size.
type FSSize struct {
	BlockSize int64
	Blocks    int64
}

// Bytes is the filesystem's data size in bytes.
func (s FSSize) Bytes() int64 { return s.BlockSize * s.Blocks }

// ErrNoSuperblock marks a device whose superblock is not the expected one.
var ErrNoSuperblock = errors.New("no superblock of the expected type")

// ext2/3/4 superblock: 1024 bytes into the device, little-endian.
const (
	extSuperblockOffset = 1024
	extMagic            = 0xEF53
	extIncompat64Bit    = 0x80
)

// ExtSize reads an ext2/3/4 superblock. Reading it through the block device
// is coherent with a mounted filesystem: ext4 keeps its superblock buffer in
// the block device's page cache.
func ExtSize(dev string) (FSSize, error) {
	f, err := os.Open(dev)
	if err != nil {
		return FSSize{}, err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, extSuperblockOffset); err != nil {
		return FSSize{}, fmt.Errorf("read ext superblock of %s: %w", dev, err)
	}
	return parseExtSuperblock(dev, sb)
}

func parseExtSuperblock(dev string, sb []byte) (FSSize, error) {
	le := binary.LittleEndian
	if le.Uint16(sb[56:]) != extMagic {
		return FSSize{}, fmt.Errorf("%w: %s has no ext superblock", ErrNoSuperblock, dev)
	}
	logBlockSize := le.Uint32(sb[24:])
	if logBlockSize > 6 { // 1 KiB << 6 = 64 KiB, the largest ext block size
		return FSSize{}, fmt.Errorf("%w: %s: implausible block size exponent %d", ErrNoSuperblock, dev, logBlockSize)
	}
	blocks := uint64(le.Uint32(sb[4:]))
	if le.Uint32(sb[96:])&extIncompat64Bit != 0 {
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	return FSSize{BlockSize: 1024 << logBlockSize, Blocks: int64(blocks)}, nil
}

// xfsGeometryV1 mirrors struct xfs_fsop_geom_v1 (linux/fs/xfs/libxfs/xfs_fs.h),
// the oldest geometry every kernel answers.
type xfsGeometryV1 struct {
	BlockSize    uint32
	RTExtSize    uint32
	AGBlocks     uint32
	AGCount      uint32
	LogBlocks    uint32
	SectSize     uint32
	InodeSize    uint32
	IMaxPct      uint32
	DataBlocks   uint64
	RTBlocks     uint64
	RTExtents    uint64
	LogStart     uint64
	UUID         [16]byte
	SUnit        uint32
	SWidth       uint32
	Version      int32
	Flags        uint32
	LogSectSize  uint32
	RTSectSize   uint32
	DirBlockSize uint32
	_            uint32 // the C struct's tail padding
}

// XFS_IOC_FSGEOMETRY_V1 = _IOR('X', 100, struct xfs_fsop_geom_v1).
var xfsIocFSGeometryV1 = uintptr(2<<30 | unsafe.Sizeof(xfsGeometryV1{})<<16 | 'X'<<8 | 100)

// XFSSize asks the kernel for the geometry of the xfs filesystem mounted at
// mountpoint. (The on-disk superblock can lag behind a mounted xfs: its
// buffers do not live in the block device's page cache.)
func XFSSize(mountpoint string) (FSSize, error) {
	f, err := os.Open(mountpoint)
	if err != nil {
		return FSSize{}, err
	}
	defer f.Close()
	var geo xfsGeometryV1
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), xfsIocFSGeometryV1, uintptr(unsafe.Pointer(&geo))); errno != 0 {
		return FSSize{}, fmt.Errorf("xfs geometry of %s: %w", mountpoint, errno)
	}
	return FSSize{BlockSize: int64(geo.BlockSize), Blocks: int64(geo.DataBlocks)}, nil
}

// MountedSize returns the size of fstype mounted at mountpoint from dev.
func MountedSize(dev, mountpoint, fstype string) (FSSize, error) {
	switch {
	case strings.HasPrefix(fstype, "ext"):
		return ExtSize(dev)
	case fstype == "xfs":
		return XFSSize(mountpoint)
	}
	return FSSize{}, fmt.Errorf("%w: %q", ErrUnsupportedFS, fstype)
}
