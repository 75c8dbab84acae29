package packaging

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tether-ecs/tether/internal/agentproto"
	"github.com/tether-ecs/tether/test/sandbox"
	"github.com/tether-ecs/tether/test/testenv"
)

const testVersion = "v0.0.0-releasetest"

// release runs `make release` once for the package's tests.
func release(t *testing.T) string {
	t.Helper()
	testenv.RequireCommands(t, "make", "go", "tar", "gzip", "sha256sum")
	bin := t.TempDir()
	cmd := exec.Command("make", "-C", "../..", "release", "VERSION="+testVersion, "BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	return filepath.Join(bin, "release")
}

// unpack extracts a .tar.gz into dir and lists its entries.
func unpack(t *testing.T, archive, dir string) []string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: %s owned by %d:%d, dated %s; want a reproducible archive (0:0, epoch)", archive, h.Name, h.Uid, h.Gid, h.ModTime)
		}
		target := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
}

// make release builds both archives with the agent, its unit and the
// install script; SHA256SUMS verifies them; each binary is a static
// executable of its architecture, stamped with the version.
func TestReleaseArchives(t *testing.T) {
	out := release(t)
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = out
	if b, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c SHA256SUMS: %v\n%s", err, b)
	}
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		name := "tether-agent_" + testVersion + "_linux_" + arch
		dir := t.TempDir()
		entries := unpack(t, filepath.Join(out, name+".tar.gz"), dir)
		want := []string{name + "/", name + "/install.sh", name + "/tether-agent", name + "/tether-agent.service"}
		if !slices.Equal(entries, want) {
			t.Errorf("%s holds %q, want %q", name, entries, want)
		}
		bin := filepath.Join(dir, name, "tether-agent")
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		interp := f.Section(".interp")
		if f.Machine != machine || interp != nil {
			t.Errorf("%s: machine %v (want %v), dynamic loader section %v (want static)", name, f.Machine, machine, interp != nil)
		}
		f.Close()
		runner := []string{bin}
		if arch == "arm64" {
			testenv.RequireCommands(t, "qemu-aarch64-static")
			runner = []string{"qemu-aarch64-static", bin}
		}
		b, err := exec.Command(runner[0], append(runner[1:], "version", "--json")...).Output()
		if err != nil {
			t.Fatalf("%s version --json: %v", name, err)
		}
		var v agentproto.VersionResult
		if err := json.Unmarshal(b, &v); err != nil || v.Version != testVersion || v.Protocol != agentproto.Protocol {
			t.Errorf("%s version --json = %s (%v); want version %s, protocol %d", name, b, err, testVersion, agentproto.Protocol)
		}
	}
}

// install.sh, run as the README's user-data line runs it, on a host of the
// local world (a private mount namespace with its own /usr/local/bin and
// /etc/systemd/system): the agent lands where the SSM documents call it,
// the unit where systemd finds it, and systemd is asked to start it and to
// restart a running ECS agent (its capabilities are computed at start).
func TestInstallScriptOnAHost(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nsenter", "mount", "blkid", "mkfs.ext4", "mkfs.xfs", "e2fsck", "resize2fs", "xfs_growfs", "xfs_repair")
	out := release(t)
	dir := t.TempDir()
	name := "tether-agent_" + testVersion + "_linux_amd64"
	unpack(t, filepath.Join(out, name+".tar.gz"), dir)

	m := sandbox.NewT(t, sandbox.Options{ID: "i-0feedfacefeedface", Dir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh := func(script string) (string, error) {
		b, err := m.Command(ctx, "sh", "-c", script).CombinedOutput()
		return string(b), err
	}
	// The host's own directories, empty; systemctl records what it is
	// asked (the namespace has no systemd) and says ecs is active.
	stub := filepath.Join(dir, "stub")
	if err := os.MkdirAll(stub, 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(dir, "systemctl.calls")
	if err := os.WriteFile(filepath.Join(stub, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >> "+calls+"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if o, err := sh("mount -t tmpfs tmpfs /usr/local/bin && mkdir -p /etc/systemd/system && mount -t tmpfs tmpfs /etc/systemd/system"); err != nil {
		t.Fatalf("preparing the host: %v\n%s", err, o)
	}
	o, err := sh("PATH=" + stub + ":/usr/sbin:/usr/bin:/sbin:/bin " + filepath.Join(dir, name, "install.sh"))
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, o)
	}
	got, err := sh("/usr/local/bin/tether-agent version --json && cat /etc/systemd/system/tether-agent.service")
	if err != nil {
		t.Fatalf("after install: %v\n%s", err, got)
	}
	var v agentproto.VersionResult
	line, unitText, _ := strings.Cut(got, "\n")
	if err := json.Unmarshal([]byte(line), &v); err != nil || v.Version != testVersion {
		t.Errorf("installed agent says %q (%v), want version %s", line, err, testVersion)
	}
	want, err := os.ReadFile("tether-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	if unitText != string(want) {
		t.Errorf("installed unit differs from agent/packaging/tether-agent.service")
	}
	log, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	wantCalls := "daemon-reload\nenable tether-agent\nrestart tether-agent\nis-active --quiet ecs\nrestart ecs\n"
	if string(log) != wantCalls {
		t.Errorf("systemctl was asked\n%s\nwant\n%s", log, wantCalls)
	}
	// The box's own /usr/local/bin is untouched.
	if _, err := os.Stat("/usr/local/bin/tether-agent"); err == nil {
		if b, _ := exec.Command("/usr/local/bin/tether-agent", "version", "--json").Output(); strings.Contains(string(b), testVersion) {
			t.Errorf("install.sh in the host's namespace changed the box's /usr/local/bin")
		}
	}
	// A binary that does not run here (another architecture, a truncated
	// download) is refused before anything changes.
	broken := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"install.sh", "tether-agent.service"} {
		b, err := os.ReadFile(filepath.Join(dir, name, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(broken, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	elfHead, err := os.ReadFile(filepath.Join(dir, name, "tether-agent"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "tether-agent"), elfHead[:4096], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(calls, 0); err != nil {
		t.Fatal(err)
	}
	o, err = sh("PATH=" + stub + ":/usr/sbin:/usr/bin:/sbin:/bin " + filepath.Join(broken, "install.sh"))
	if err == nil || !strings.Contains(o, "does not run on this") {
		t.Errorf("install.sh with a truncated binary: %v\n%s", err, o)
	}
	if got, _ := sh("/usr/local/bin/tether-agent version --json"); !strings.Contains(got, testVersion) {
		t.Errorf("a refused install replaced the agent: %s", got)
	}
	if log, _ := os.ReadFile(calls); len(log) > 0 {
		t.Errorf("a refused install asked systemctl %q", log)
	}
}
