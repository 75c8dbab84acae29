package fsys

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// step is one expected command and what it answers.
type step struct {
	cmd []string // name and args, exactly
	res Result
	err error
}

// scriptedRunner answers an exact list of commands in order and fails the
// test on any other command (mount-utils' safe_format_and_mount_test style).
type scriptedRunner struct {
	t     *testing.T
	steps []step
	next  int
}

func script(t *testing.T, steps ...step) *scriptedRunner {
	r := &scriptedRunner{t: t, steps: steps}
	t.Cleanup(func() {
		if r.next != len(r.steps) {
			t.Errorf("ran %d of %d scripted commands; next expected: %q", r.next, len(r.steps), r.steps[r.next].cmd)
		}
	})
	return r
}

func (r *scriptedRunner) Run(_ context.Context, name string, args ...string) (Result, error) {
	got := append([]string{name}, args...)
	if r.next >= len(r.steps) {
		r.t.Fatalf("unexpected command %q after the script ended", got)
	}
	s := r.steps[r.next]
	r.next++
	if !slices.Equal(got, s.cmd) {
		r.t.Fatalf("command %d: got %q, want %q", r.next, got, s.cmd)
	}
	return s.res, s.err
}

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

const dev = "/dev/nvme1n1"

func blkid(code int, out string) step {
	return step{cmd: []string{"blkid", "-p", "-o", "export", dev}, res: Result{ExitCode: code, Stdout: []byte(out)}}
}

func TestPrepareScripted(t *testing.T) {
	mkfsExt4 := []string{"mkfs.ext4", "-q", "-m0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", dev}
	mkfsXFS := []string{"mkfs.xfs", "-q", "-K", dev}
	fsck := []string{"e2fsck", "-p", dev}
	ext4Out := "DEVNAME=" + dev + "\nUUID=u\nBLOCK_SIZE=4096\nTYPE=ext4\nUSAGE=filesystem\n"
	xfsOut := "DEVNAME=" + dev + "\nUUID=u\nTYPE=xfs\nUSAGE=filesystem\n"

	tests := []struct {
		name      string
		requested string
		steps     []step
		want      Prepared
		wantErr   error
	}{
		{
			name: "blank gets ext4", requested: "ext4",
			steps: []step{blkid(2, ""), {cmd: mkfsExt4}, blkid(0, ext4Out)},
			want:  Prepared{FSType: "ext4", Formatted: true},
		},
		{
			name: "blank gets xfs", requested: "xfs",
			steps: []step{blkid(2, ""), {cmd: mkfsXFS}, blkid(0, xfsOut)},
			want:  Prepared{FSType: "xfs", Formatted: true},
		},
		{
			name: "mkfs fails", requested: "ext4",
			steps:   []step{blkid(2, ""), {cmd: mkfsExt4, res: Result{ExitCode: 1, Stderr: []byte("boom")}}},
			wantErr: ErrFormatFailed,
		},
		{
			name: "mkfs leaves something else", requested: "ext4",
			steps:   []step{blkid(2, ""), {cmd: mkfsExt4}, blkid(2, "")},
			wantErr: ErrFormatFailed,
		},
		{
			name: "existing ext4 clean", requested: "ext4",
			steps: []step{blkid(0, ext4Out), {cmd: fsck}},
			want:  Prepared{FSType: "ext4", Found: Signature{Type: "ext4", Usage: "filesystem"}},
		},
		{
			name: "existing ext4 requested xfs: mounted as ext4, never formatted", requested: "xfs",
			steps: []step{blkid(0, ext4Out), {cmd: fsck}},
			want:  Prepared{FSType: "ext4", Found: Signature{Type: "ext4", Usage: "filesystem"}},
		},
		{
			name: "existing xfs requested ext4: no fsck", requested: "ext4",
			steps: []step{blkid(0, xfsOut)},
			want:  Prepared{FSType: "xfs", Found: Signature{Type: "xfs", Usage: "filesystem"}},
		},
		{
			name: "fsck corrected errors", requested: "ext4",
			steps: []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 1}}},
			want:  Prepared{FSType: "ext4", Found: Signature{Type: "ext4", Usage: "filesystem"}},
		},
		{
			name: "fsck corrected, reboot advised", requested: "ext4",
			steps: []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 3}}},
			want:  Prepared{FSType: "ext4", Found: Signature{Type: "ext4", Usage: "filesystem"}},
		},
		{
			name: "fsck uncorrected errors stop the mount", requested: "ext4",
			steps:   []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 4}}},
			wantErr: ErrFilesystemErrors,
		},
		{
			name: "fsck operational error and uncorrected", requested: "ext4",
			steps:   []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 12}}},
			wantErr: ErrFilesystemErrors,
		},
		{
			name: "fsck operational error: mount goes ahead", requested: "ext4",
			steps: []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 8}}},
			want:  Prepared{FSType: "ext4", Found: Signature{Type: "ext4", Usage: "filesystem"}},
		},
		{
			name: "gpt refused", requested: "ext4",
			steps:   []step{blkid(0, "DEVNAME="+dev+"\nPTUUID=x\nPTTYPE=gpt\n")},
			wantErr: ErrRefused,
		},
		{
			name: "filesystem inside a partition table refused", requested: "ext4",
			steps:   []step{blkid(0, "TYPE=ext4\nUSAGE=filesystem\nPTTYPE=dos\n")},
			wantErr: ErrRefused,
		},
		{
			name: "LVM refused", requested: "ext4",
			steps:   []step{blkid(0, "TYPE=LVM2_member\nUSAGE=raid\n")},
			wantErr: ErrRefused,
		},
		{
			name: "other filesystem refused", requested: "ext4",
			steps:   []step{blkid(0, "TYPE=btrfs\nUSAGE=filesystem\n")},
			wantErr: ErrRefused,
		},
		{
			name: "ambivalent refused", requested: "ext4",
			steps:   []step{blkid(8, "")},
			wantErr: ErrRefused,
		},
		{
			name: "found but unnamed refused", requested: "ext4",
			steps:   []step{blkid(0, "DEVNAME="+dev+"\n")},
			wantErr: ErrRefused,
		},
		{
			name: "blank where a filesystem is expected", requested: "",
			steps:   []step{blkid(2, "")},
			wantErr: ErrUnformatted,
		},
		{
			name: "existing filesystem where one is expected", requested: "",
			steps: []step{blkid(0, xfsOut)},
			want:  Prepared{FSType: "xfs", Found: Signature{Type: "xfs", Usage: "filesystem"}},
		},
		{
			name: "blkid usage error is a failure, not blank", requested: "ext4",
			steps:   []step{blkid(4, "")},
			wantErr: errBlkid,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := script(t, tc.steps...)
			got, err := Prepare(context.Background(), r, quiet(), dev, tc.requested)
			switch {
			case tc.wantErr == errBlkid:
				if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "blkid") {
					t.Fatalf("err = %v, want a blkid failure", err)
				}
				return
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("Prepare: %v", err)
			}
			if got != tc.want {
				t.Errorf("Prepare = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// errBlkid stands for "an error that is neither a refusal nor nil".
var errBlkid = errors.New("blkid failure")

func TestRefusedErrorNamesWhatWasFound(t *testing.T) {
	_, err := Decide(dev, Signature{Type: "LVM2_member", Usage: "raid"}, "ext4")
	var refused *RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("err = %v, want *RefusedError", err)
	}
	for _, want := range []string{dev, "LVM2_member"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not name %q", err, want)
		}
	}
}

func TestMakeFilesystemRejectsUnknownType(t *testing.T) {
	r := script(t) // no command may run
	if err := MakeFilesystem(context.Background(), r, dev, "btrfs"); !errors.Is(err, ErrUnsupportedFS) {
		t.Fatalf("err = %v, want ErrUnsupportedFS", err)
	}
}
