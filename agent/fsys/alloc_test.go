package fsys

import (
	"os"
	"strconv"
	"syscall"
)

// allocatedBytes is how much of a (sparse) file is really on disk.
func allocatedBytes(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
