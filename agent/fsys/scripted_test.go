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

// fakeInspector answers Prepare's reads of the device.
type fakeInspector struct {
	proof    BlankProof
	proofErr error
	state    ExtState
	proved   int
}

func (f *fakeInspector) ProveBlank(string) (BlankProof, error) {
	f.proved++
	return f.proof, f.proofErr
}
func (f *fakeInspector) ExtState(string) (ExtState, error) { return f.state, nil }

var (
	blankDisk   = BlankProof{Blank: true, NonZeroAt: -1, BytesRead: 5 << 20, Samples: 60}
	dataDisk    = BlankProof{NonZeroAt: 4096}
	cleanExt    = ExtState{Valid: true}
	recoverExt  = ExtState{Valid: true, NeedsRecover: true}
	erroredExt  = ExtState{Valid: true, Errors: true}
	uncheckedFS = ExtState{}
)

func TestPrepareScripted(t *testing.T) {
	mkfsExt4 := []string{"mkfs.ext4", "-q", "-m0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", dev}
	mkfsXFS := []string{"mkfs.xfs", "-q", "-K", dev}
	fsck := []string{"e2fsck", "-p", dev}
	ext4Out := "DEVNAME=" + dev + "\nUUID=u\nBLOCK_SIZE=4096\nTYPE=ext4\nUSAGE=filesystem\n"
	xfsOut := "DEVNAME=" + dev + "\nUUID=u\nTYPE=xfs\nUSAGE=filesystem\n"
	extSig := Signature{Type: "ext4", Usage: "filesystem"}
	granted := func(fs string) PrepareOptions { return PrepareOptions{FSType: fs, FormatIfBlank: true} }

	tests := []struct {
		name    string
		opts    PrepareOptions
		disk    fakeInspector
		steps   []step
		want    Prepared
		wantErr error
	}{
		{
			name: "blank with the grant gets ext4", opts: granted("ext4"), disk: fakeInspector{proof: blankDisk},
			steps: []step{blkid(2, ""), {cmd: mkfsExt4}, blkid(0, ext4Out)},
			want:  Prepared{FSType: "ext4", Formatted: true},
		},
		{
			name: "blank with the grant gets xfs", opts: granted("xfs"), disk: fakeInspector{proof: blankDisk},
			steps: []step{blkid(2, ""), {cmd: mkfsXFS}, blkid(0, xfsOut)},
			want:  Prepared{FSType: "xfs", Formatted: true},
		},
		{
			name: "blank without the grant is not formatted", opts: PrepareOptions{FSType: "ext4"}, disk: fakeInspector{proof: blankDisk},
			steps:   []step{blkid(2, "")},
			wantErr: ErrNotFormatted,
		},
		{
			name: "no signature but data: never formatted, grant or not", opts: granted("ext4"), disk: fakeInspector{proof: dataDisk},
			steps:   []step{blkid(2, "")},
			wantErr: ErrNotFormatted,
		},
		{
			name: "no signature and unreadable: never formatted", opts: granted("ext4"), disk: fakeInspector{proofErr: ErrUnreadable},
			steps:   []step{blkid(2, "")},
			wantErr: ErrNotFormatted,
		},
		{
			name: "blkid exit 2 with an error on stderr is not blank", opts: granted("ext4"), disk: fakeInspector{proof: blankDisk},
			steps: []step{{cmd: []string{"blkid", "-p", "-o", "export", dev},
				res: Result{ExitCode: 2, Stderr: []byte("blkid: error: " + dev + ": Input/output error")}}},
			wantErr: ErrNotFormatted,
		},
		{
			name: "an unprovable identity is never formatted", opts: PrepareOptions{FSType: "ext4", FormatIfBlank: true, NeverFormat: "found by name only"},
			disk: fakeInspector{proof: blankDisk}, steps: []step{blkid(2, "")},
			wantErr: ErrNotFormatted,
		},
		{
			name: "mkfs fails", opts: granted("ext4"), disk: fakeInspector{proof: blankDisk},
			steps:   []step{blkid(2, ""), {cmd: mkfsExt4, res: Result{ExitCode: 1, Stderr: []byte("boom")}}},
			wantErr: ErrFormatFailed,
		},
		{
			name: "mkfs leaves something else", opts: granted("ext4"), disk: fakeInspector{proof: blankDisk},
			steps:   []step{blkid(2, ""), {cmd: mkfsExt4}, blkid(2, "")},
			wantErr: ErrFormatFailed,
		},
		{
			name: "existing clean ext4: no fsck", opts: granted("ext4"), disk: fakeInspector{state: cleanExt},
			steps: []step{blkid(0, ext4Out)},
			want:  Prepared{FSType: "ext4", Found: extSig},
		},
		{
			name: "ext4 with a journal to replay is checked", opts: granted("ext4"), disk: fakeInspector{state: recoverExt},
			steps: []step{blkid(0, ext4Out), {cmd: fsck}},
			want:  Prepared{FSType: "ext4", Checked: true, Found: extSig},
		},
		{
			name: "ext4 with recorded errors is checked", opts: PrepareOptions{}, disk: fakeInspector{state: erroredExt},
			steps: []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 1}}},
			want:  Prepared{FSType: "ext4", Checked: true, Found: extSig},
		},
		{
			name: "ext4 never marked valid is checked", opts: PrepareOptions{}, disk: fakeInspector{state: uncheckedFS},
			steps: []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 3}}},
			want:  Prepared{FSType: "ext4", Checked: true, Found: extSig},
		},
		{
			name: "existing ext4 requested xfs: mounted as ext4, never formatted", opts: granted("xfs"), disk: fakeInspector{state: cleanExt},
			steps: []step{blkid(0, ext4Out)},
			want:  Prepared{FSType: "ext4", Found: extSig},
		},
		{
			name: "existing xfs requested ext4: no fsck", opts: granted("ext4"),
			steps: []step{blkid(0, xfsOut)},
			want:  Prepared{FSType: "xfs", Found: Signature{Type: "xfs", Usage: "filesystem"}},
		},
		{
			name: "fsck uncorrected errors stop the mount", opts: granted("ext4"), disk: fakeInspector{state: erroredExt},
			steps:   []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 4}}},
			wantErr: ErrFilesystemErrors,
		},
		{
			name: "fsck operational error and uncorrected", opts: granted("ext4"), disk: fakeInspector{state: erroredExt},
			steps:   []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 12}}},
			wantErr: ErrFilesystemErrors,
		},
		{
			name: "fsck operational error stops the mount", opts: granted("ext4"), disk: fakeInspector{state: recoverExt},
			steps:   []step{blkid(0, ext4Out), {cmd: fsck, res: Result{ExitCode: 8}}},
			wantErr: ErrCheckFailed,
		},
		{
			name: "gpt refused", opts: granted("ext4"),
			steps:   []step{blkid(0, "DEVNAME="+dev+"\nPTUUID=x\nPTTYPE=gpt\n")},
			wantErr: ErrRefused,
		},
		{
			name: "filesystem inside a partition table refused", opts: granted("ext4"),
			steps:   []step{blkid(0, "TYPE=ext4\nUSAGE=filesystem\nPTTYPE=dos\n")},
			wantErr: ErrRefused,
		},
		{
			name: "LVM refused", opts: granted("ext4"),
			steps:   []step{blkid(0, "TYPE=LVM2_member\nUSAGE=raid\n")},
			wantErr: ErrRefused,
		},
		{
			name: "other filesystem refused", opts: granted("ext4"),
			steps:   []step{blkid(0, "TYPE=btrfs\nUSAGE=filesystem\n")},
			wantErr: ErrRefused,
		},
		{
			name: "ambivalent refused", opts: granted("ext4"),
			steps:   []step{blkid(8, "")},
			wantErr: ErrRefused,
		},
		{
			name: "found but unnamed refused", opts: granted("ext4"),
			steps:   []step{blkid(0, "DEVNAME="+dev+"\n")},
			wantErr: ErrRefused,
		},
		{
			name: "existing filesystem where one is expected", opts: PrepareOptions{},
			steps: []step{blkid(0, xfsOut)},
			want:  Prepared{FSType: "xfs", Found: Signature{Type: "xfs", Usage: "filesystem"}},
		},
		{
			name: "blkid usage error is a failure, not blank", opts: granted("ext4"),
			steps:   []step{blkid(4, "")},
			wantErr: errBlkid,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := script(t, tc.steps...)
			disk := tc.disk
			got, err := Prepare(context.Background(), r, &disk, quiet(), dev, tc.opts)
			switch {
			case tc.wantErr == errBlkid:
				if err == nil || errors.Is(err, ErrRefused) || errors.Is(err, ErrNotFormatted) || !strings.Contains(err.Error(), "blkid") {
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

// A blank device without the grant is refused with a message that says
// what was found and how an operator proceeds.
func TestNotFormattedSaysWhatAndHow(t *testing.T) {
	r := script(t, blkid(2, ""))
	_, err := Prepare(context.Background(), r, &fakeInspector{proof: blankDisk}, quiet(), dev, PrepareOptions{FSType: "ext4"})
	for _, want := range []string{dev, "no filesystem signature", "zeros", "--format-if-blank", "e2fsck -n -b 32768"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("message %v does not say %q", err, want)
		}
	}
	r = script(t, blkid(2, ""))
	_, err = Prepare(context.Background(), r, &fakeInspector{proof: dataDisk}, quiet(), dev, PrepareOptions{FSType: "ext4", FormatIfBlank: true})
	for _, want := range []string{"non-zero data at byte 4096", "never formats a device that holds data"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("message %v does not say %q", err, want)
		}
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
