package demo

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Leftovers lists what a torn-down world left on this machine: loop
// devices backed by files under dir, mounts under dir (in this process's
// mount namespace), and processes whose parent is this process or whose
// command line names dir (dockerd, containerd, tether-agent, emulators).
// Empty means nothing is left.
func Leftovers(dir string) []string {
	var left []string
	dir = filepath.Clean(dir)
	under := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range loops {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if backing := strings.TrimSuffix(strings.TrimSpace(string(raw)), " (deleted)"); under(backing) {
			left = append(left, fmt.Sprintf("loop device /dev/%s over %s", filepath.Base(filepath.Dir(filepath.Dir(f))), backing))
		}
	}

	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 4 && under(fields[4]) {
				left = append(left, "mount "+fields[4])
			}
		}
		f.Close()
	}

	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		cmd := strings.TrimSpace(strings.ReplaceAll(string(raw), "\x00", " "))
		if strings.Contains(cmd, dir+"/") || parentPid(pid) == self {
			left = append(left, fmt.Sprintf("process %d: %s", pid, cmd))
		}
	}
	return left
}

// parentPid is field 4 of /proc/<pid>/stat (0 when unreadable).
func parentPid(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
