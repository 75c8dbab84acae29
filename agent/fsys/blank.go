package fsys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Inspector reads a device's bytes for the decisions that must not rest on
// blkid alone: whether it is really blank, and whether an ext filesystem
// was cleanly unmounted. Disk is the real one; tests of the decision logic
// give a fake.
type Inspector interface {
	// ProveBlank reads the device's first and last MiB and sampled blocks
	// (see Disk.ProveBlank); an error means it could not read them.
	ProveBlank(dev string) (BlankProof, error)
	// ExtState reads an ext2/3/4 superblock's state.
	ExtState(dev string) (ExtState, error)
}

// BlankProof is what reading a device found.
type BlankProof struct {
	// Blank: every byte read was zero.
	Blank bool
	// NonZeroAt is the offset of the first non-zero block read (-1 when blank).
	NonZeroAt int64
	// BytesRead and Samples say how much was read, for the log and messages.
	BytesRead int64
	Samples   int
}

func (p BlankProof) String() string {
	if p.Blank {
		return fmt.Sprintf("zeros wherever read (%d regions, %d bytes: the first and last MiB and sampled blocks)", p.Samples, p.BytesRead)
	}
	return fmt.Sprintf("non-zero data at byte %d", p.NonZeroAt)
}

// ErrUnreadable marks a device tether could not read (open or I/O error):
// nothing can be proved about it, least of all that it is blank.
var ErrUnreadable = errors.New("device unreadable")

// Disk is the Inspector of real devices.
type Disk struct{}

var _ Inspector = Disk{}

// Reads of the blank proof.
const (
	edgeBytes   = 1 << 20  // the first and last MiB: partition tables, superblocks, GPT backup, LVM/MD labels
	sampleBytes = 64 << 10 // each sampled block
	spreadCount = 48       // blocks spread evenly over the device
	directAlign = 4096     // O_DIRECT alignment (covers 512 and 4096 byte sectors)
)

// extBackupOffsets are where ext2/3/4 keep backup superblocks for groups 1,
// 3, 5, 7 and 9 (sparse_super) with 4 KiB blocks (32768 blocks per group)
// and 1 KiB blocks (8192 per group, the superblock at block 1 of a group):
// an ext filesystem whose primary superblock and first MiB were lost still
// shows here.
var extBackupOffsets = func() []int64 {
	var out []int64
	for _, g := range []int64{1, 3, 5, 7, 9} {
		out = append(out, g*32768*4096, (g*8192+1)*1024)
	}
	return out
}()

// ProveBlank reads dev with O_DIRECT (the page cache cannot answer for the
// disk) and O_EXCL (nobody has it mounted or claimed meanwhile): its first
// and last MiB, the places of ext backup superblocks, and blocks spread
// evenly over the rest. Any open or read error is ErrUnreadable: an
// unreadable device is never called blank.
func (Disk) ProveBlank(dev string) (BlankProof, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		return BlankProof{}, fmt.Errorf("%w: open %s (O_DIRECT|O_EXCL): %w", ErrUnreadable, dev, err)
	}
	defer unix.Close(fd)
	size, err := unix.Seek(fd, 0, 2)
	if err != nil || size <= 0 {
		return BlankProof{}, fmt.Errorf("%w: size of %s: %v", ErrUnreadable, dev, err)
	}
	type region struct{ off, n int64 }
	regions := []region{{0, edgeBytes}, {size - edgeBytes, edgeBytes}}
	for _, off := range extBackupOffsets {
		regions = append(regions, region{off, sampleBytes})
	}
	for i := int64(1); i <= spreadCount; i++ {
		regions = append(regions, region{size * i / (spreadCount + 1), sampleBytes})
	}
	buf := alignedBuffer(edgeBytes)
	proof := BlankProof{Blank: true, NonZeroAt: -1}
	for _, r := range regions {
		off := r.off &^ (directAlign - 1)
		if off < 0 {
			off = 0
		}
		n := min(r.n, size-off) &^ (directAlign - 1)
		if off >= size || n <= 0 {
			continue
		}
		b := buf[:n]
		if err := preadFull(fd, b, off); err != nil {
			return BlankProof{}, fmt.Errorf("%w: read %d bytes of %s at %d: %w", ErrUnreadable, n, dev, off, err)
		}
		proof.BytesRead += n
		proof.Samples++
		if i := firstNonZero(b); i >= 0 {
			return BlankProof{NonZeroAt: off + int64(i), BytesRead: proof.BytesRead, Samples: proof.Samples}, nil
		}
	}
	return proof, nil
}

func preadFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("unexpected end of device")
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// alignedBuffer returns n bytes aligned for O_DIRECT.
func alignedBuffer(n int) []byte {
	raw := make([]byte, n+directAlign)
	shift := 0
	if rem := int(uintptr(unsafe.Pointer(&raw[0])) % directAlign); rem != 0 {
		shift = directAlign - rem
	}
	return raw[shift : shift+n]
}

var zeros = make([]byte, sampleBytes)

// firstNonZero is the index of the first non-zero byte of b, or -1.
func firstNonZero(b []byte) int {
	for base := 0; base < len(b); base += len(zeros) {
		chunk := b[base:min(base+len(zeros), len(b))]
		if bytes.Equal(chunk, zeros[:len(chunk)]) {
			continue
		}
		for i, c := range chunk {
			if c != 0 {
				return base + i
			}
		}
	}
	return -1
}

// ExtState is the part of an ext2/3/4 superblock that says whether the
// filesystem was left cleanly.
type ExtState struct {
	Valid        bool // s_state has EXT2_VALID_FS: unmounted cleanly (or checked)
	Errors       bool // s_state has EXT2_ERROR_FS: the kernel found errors
	NeedsRecover bool // incompat RECOVER: a journal to replay (mounted, or not unmounted)
}

// Clean reports whether the filesystem needs no check before a mount.
func (s ExtState) Clean() bool { return s.Valid && !s.Errors && !s.NeedsRecover }

func (s ExtState) String() string {
	return fmt.Sprintf("valid=%v errors=%v needs_recovery=%v", s.Valid, s.Errors, s.NeedsRecover)
}

// ext superblock fields (linux/fs/ext4/ext4.h), offsets within the superblock.
const (
	extStateOffset    = 58 // s_state, le16
	extIncompatOffset = 96 // s_feature_incompat, le32
	extStateValid     = 0x1
	extStateError     = 0x2
	extIncompatRecov  = 0x4
)

// ExtState reads the superblock with O_DIRECT: what this host cached of the
// device may predate another host's writes.
func (Disk) ExtState(dev string) (ExtState, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return ExtState{}, fmt.Errorf("%w: open %s: %w", ErrUnreadable, dev, err)
	}
	defer unix.Close(fd)
	buf := alignedBuffer(directAlign)
	if err := preadFull(fd, buf, 0); err != nil {
		return ExtState{}, fmt.Errorf("%w: read the superblock of %s: %w", ErrUnreadable, dev, err)
	}
	sb := buf[extSuperblockOffset : extSuperblockOffset+1024]
	le := binary.LittleEndian
	if le.Uint16(sb[56:]) != extMagic {
		return ExtState{}, fmt.Errorf("%w: %s has no ext superblock", ErrNoSuperblock, dev)
	}
	state := le.Uint16(sb[extStateOffset:])
	return ExtState{
		Valid:        state&extStateValid != 0,
		Errors:       state&extStateError != 0,
		NeedsRecover: le.Uint32(sb[extIncompatOffset:])&extIncompatRecov != 0,
	}, nil
}
