package ec2sim

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// A volume's bytes live in a sparse file of its size; a snapshot is a
// sparse copy. Copies move only the data extents (SEEK_DATA/SEEK_HOLE), so
// a mostly empty 100 GiB volume copies in milliseconds.
//
// EBS volumes reach 64 TiB; ext4 files stop just short of 16 TiB. EC2's
// answer must not depend on the world's file system, so a volume larger
// than the file system allows is accepted as EC2 accepts it and its backing
// file is capped at the largest size the file system takes (a warning says
// so): the guest then sees a smaller device than EC2 reports.

const gib = int64(1) << 30

func createSparse(path string, size int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("creating backing file: %w", err)
	}
	got, err := truncateCapped(f, size)
	if err != nil {
		f.Close()
		os.Remove(path)
		return 0, fmt.Errorf("sizing backing file %s: %w", path, err)
	}
	return got, f.Close()
}

// truncateCapped sizes f to size, or, when the file system refuses a file
// that large (EFBIG), to the largest size it takes; it returns the size set.
func truncateCapped(f *os.File, size int64) (int64, error) {
	err := f.Truncate(size)
	if err == nil || !errors.Is(err, unix.EFBIG) {
		return size, err
	}
	// Binary search for the file system's limit (about 45 truncates).
	lo, hi := int64(0), size // lo fits, hi does not
	for hi-lo > 4096 {
		mid := lo + (hi-lo)/2
		if f.Truncate(mid) == nil {
			lo = mid
		} else {
			hi = mid
		}
	}
	lo &^= 4095
	return lo, f.Truncate(lo)
}

// growSparse extends the file to size (capped as above); it never shrinks
// it.
func growSparse(path string, size int64) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if st.Size() >= size {
		return st.Size(), nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	got, err := truncateCapped(f, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return got, err
}

// copySparse makes dst a sparse copy of src, then sizes it to size (at
// least src's size).
func copySparse(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := copyExtents(in, out, st.Size()); err != nil {
		out.Close()
		os.Remove(dst)
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	if _, err := truncateCapped(out, max(size, st.Size())); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func copyExtents(in, out *os.File, size int64) error {
	fd := int(in.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			// The file system cannot tell holes: copy everything.
			return copyRange(in, out, off, size-off)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if err := copyRange(in, out, data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

func copyRange(in, out *os.File, off, n int64) error {
	_, err := io.Copy(io.NewOffsetWriter(out, off), io.NewSectionReader(in, off, n))
	return err
}
