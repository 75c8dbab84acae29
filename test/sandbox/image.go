package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BusyboxRootfs returns a rootfs tar made from the box's static busybox
// (every applet as a symlink in /bin, plus the usual empty directories),
// built once and cached in cacheDir under a name that carries the binary's
// hash. cacheDir "" means $XDG_CACHE_HOME/tether or ~/.cache/tether.
func BusyboxRootfs(ctx context.Context, cacheDir string) (string, error) {
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("busybox rootfs: %w", err)
		}
		cacheDir = filepath.Join(base, "tether")
	}
	bin, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox rootfs: %w", err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("busybox rootfs: %w", err)
	}
	sum := sha256.Sum256(data)
	path := filepath.Join(cacheDir, "busybox-rootfs-"+hex.EncodeToString(sum[:6])+".tar")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	list, err := exec.CommandContext(ctx, bin, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("busybox --list: %w", err)
	}
	var buf bytes.Buffer
	if err := writeBusyboxTar(&buf, data, strings.Fields(string(list))); err != nil {
		return "", fmt.Errorf("busybox rootfs: %w", err)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("busybox rootfs: %w", err)
	}
	// Write then rename, so concurrent builders never see half a tar.
	tmp, err := os.CreateTemp(cacheDir, ".busybox-rootfs-*")
	if err != nil {
		return "", fmt.Errorf("busybox rootfs: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return "", fmt.Errorf("busybox rootfs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("busybox rootfs: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("busybox rootfs: %w", err)
	}
	return path, nil
}

func writeBusyboxTar(w io.Writer, busybox []byte, applets []string) error {
	tw := tar.NewWriter(w)
	now := time.Unix(0, 0)
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "root", "var", "usr", "usr/bin", "sbin"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: now}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(busybox)), ModTime: now}); err != nil {
		return err
	}
	if _, err := tw.Write(busybox); err != nil {
		return err
	}
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: now}); err != nil {
			return err
		}
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
	group := "root:x:0:\nnogroup:x:65534:\n"
	for name, body := range map[string]string{"etc/passwd": passwd, "etc/group": group} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: now}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, body); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ImportImage imports a rootfs tar into the machine's dockerd as ref
// (e.g. "busybox" or "busybox:latest"), with PATH set and CMD ["sh"], as
// `docker import` does.
func (m *Machine) ImportImage(ctx context.Context, tarPath, ref string) error {
	if m.DockerdPid() == 0 {
		return fmt.Errorf("sandbox %s: import %s: %w", m.id, ref, ErrDockerdNotRunning)
	}
	repo, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > 0 && !strings.Contains(ref[i:], "/") {
		repo, tag = ref[:i], ref[i+1:]
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return fmt.Errorf("sandbox %s: import %s: %w", m.id, ref, err)
	}
	defer f.Close()
	q := url.Values{}
	q.Set("fromSrc", "-")
	q.Set("repo", repo)
	q.Set("tag", tag)
	q.Add("changes", `ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`)
	q.Add("changes", `CMD ["sh"]`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker/images/create?"+q.Encode(), f)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := m.dockerHTTPClient().Do(req)
	if err != nil {
		return fmt.Errorf("sandbox %s: import %s: %w", m.id, ref, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	// The stream reports errors in-band as {"error":...} with status 200.
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		return fmt.Errorf("sandbox %s: import %s: %s: %s", m.id, ref, resp.Status, strings.TrimSpace(string(body)))
	}
	m.log.Info("image imported", "image", repo+":"+tag, "tar", tarPath)
	return nil
}
