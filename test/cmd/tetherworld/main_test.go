package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-ecs/tether/test/demo"
	"github.com/tether-ecs/tether/test/images"
	"github.com/tether-ecs/tether/test/testenv"
	"github.com/tether-ecs/tether/test/world/lambdarun"
)

var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// tetherworld builds the command once.
func tetherworld(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		if binary.dir, binary.err = os.MkdirTemp("", "tetherworld-test-"); binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "tetherworld")
		out, err := exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// running is one tetherworld process.
type running struct {
	cmd      *exec.Cmd
	stderr   *bytes.Buffer
	endpoint string
	envFile  string
	done     chan error
}

// start runs tetherworld and waits (bounded) for its two stdout lines.
func start(t *testing.T, args ...string) *running {
	t.Helper()
	cmd := exec.Command(tetherworld(t), args...)
	cmd.Dir = "../../.." // the repository, as `make world` runs it
	r := &running{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = &lockedWriter{w: r.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
		r.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.done:
			case <-time.After(2 * time.Minute):
				_ = cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("tetherworld stderr:\n%s", r.stderr.String())
		}
	})
	deadline := time.After(4 * time.Minute)
	for r.endpoint == "" || r.envFile == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("tetherworld ended before it was ready: %v\n%s", <-r.done, r.stderr.String())
			}
			if v, ok := strings.CutPrefix(line, "AWS_ENDPOINT_URL="); ok {
				r.endpoint = v
			} else if v, ok := strings.CutPrefix(line, "TETHER_WORLD_ENV="); ok {
				r.envFile = v
			} else {
				t.Fatalf("unexpected stdout line %q", line)
			}
		case <-deadline:
			t.Fatalf("tetherworld not ready after 4 minutes\n%s", r.stderr.String())
		}
	}
	go func() {
		for range lines {
			t.Errorf("more stdout after the two lines")
		}
	}()
	return r
}

// stop signals the process and waits for its exit status.
func (r *running) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(2 * time.Minute):
		t.Fatalf("tetherworld did not stop within 2 minutes\n%s", r.stderr.String())
	}
	return -1
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// bash runs a script with only PATH and HOME set, as a fresh terminal.
func bash(t *testing.T, script string) string {
	t.Helper()
	testenv.RequireCommands(t, "bash", "aws")
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", script, err, out, stderr.String())
	}
	return string(out)
}

func TestFakeWorldServesUntilSIGTERM(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "world.env")
	r := start(t, "--instances", "2", "--hosts", "fake", "--functions", "none", "--profile", "instant", "--env-file", envFile, "--log", "json")
	if r.envFile != envFile || !strings.HasPrefix(r.endpoint, "http://127.0.0.1:") {
		t.Fatalf("stdout said endpoint %q, env %q", r.endpoint, r.envFile)
	}
	out := bash(t, ". "+envFile+` && test "$AWS_ENDPOINT_URL" = `+r.endpoint+` && aws ecs list-container-instances --cluster "$ECSClusterName" --query 'length(containerInstanceArns)' && aws cloudformation describe-stacks --stack-name "$CloudFormationStack" --query 'Stacks[0].StackStatus' --output text`)
	if strings.Fields(out)[0] != "2" || strings.Fields(out)[1] != "CREATE_COMPLETE" {
		t.Fatalf("through the env file: %q", out)
	}
	worldDir := filepath.Dir(filepath.Dir(envValue(t, envFile, "AWS_CONFIG_FILE")))

	if code := r.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit status %d after SIGTERM\n%s", code, r.stderr.String())
	}
	for _, p := range []string{envFile, worldDir} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("--log json wrote a line that is not JSON: %q", line)
		}
	}
	if !strings.Contains(r.stderr.String(), "world torn down") {
		t.Errorf("no teardown in the log:\n%s", r.stderr.String())
	}
}

// What `make world` runs (with the instant profile to be quick): real hosts
// and the real bootstraps; SIGINT leaves nothing behind.
func TestRealWorldWithBootstrapsUntilSIGINT(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nsenter", "losetup", "dockerd", "busybox", "make", "go")
	if _, err := lambdarun.FindRIE(); err != nil {
		testenv.Missing(t, err.Error())
	}
	parent := t.TempDir()
	r := start(t, "--instances", "2", "--azs", "1", "--profile", "instant", "--hosts", "real", "--functions", "rie", "--dir", parent)
	out := bash(t, ". "+r.envFile+` && aws ecs describe-container-instances --cluster "$ECSClusterName" --container-instances $(aws ecs list-container-instances --cluster "$ECSClusterName" --query 'containerInstanceArns' --output text) --query 'containerInstances[].attributes[?name==`+"`ecs.capability.docker-plugin.tether`"+`].name' --output text`)
	if strings.Count(out, "ecs.capability.docker-plugin.tether") != 2 {
		t.Fatalf("instances advertising the tether plugin: %q, want both", out)
	}
	if code := r.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, r.stderr.String())
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in %s: %s", parent, e.Name())
	}
	devs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range devs {
		if raw, _ := os.ReadFile(f); strings.HasPrefix(string(raw), parent) {
			t.Errorf("loop device left: %s over %s", f, raw)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if raw, _ := os.ReadFile(f); bytes.Contains(raw, []byte(parent)) {
			t.Errorf("process left: %s: %s", f, bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))
		}
	}
}

func TestBadUsageExits2(t *testing.T) {
	for _, args := range [][]string{
		{"--hosts", "vm"},
		{"--log", "xml"},
		{"--instances", "-1", "--hosts", "fake"},
		{"--nope"},
		{"--hosts", "fake", "extra"},
	} {
		cmd := exec.Command(tetherworld(t), args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("tetherworld %v: %v, want exit status 2\n%s", args, err, stderr.String())
		} else if stderr.Len() == 0 {
			t.Errorf("tetherworld %v: exit 2 without a word on stderr", args)
		}
	}
}

// envValue reads one variable of an env file.
func envValue(t *testing.T, path, key string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "export "+key+"="); ok {
			return strings.Trim(v, "'")
		}
	}
	t.Fatalf("%s not in %s", key, path)
	return ""
}

// The seed's steps 2–7 and its cleanup, typed by hand against what `make
// world` starts (README: "source $TETHER_WORLD_ENV and the seed's steps work
// as written"): tetherworld with real hosts, the real bootstraps and its
// default --mysql auto, so the seed's MySQL task finds its image. Opt-in
// like the e2e MariaDB walkthrough (CI sets TETHER_E2E_MARIADB=1): the
// image's first build runs debootstrap.
func TestSeedTypedByHandAgainstMakeWorld(t *testing.T) {
	if os.Getenv("TETHER_E2E_MARIADB") != "1" {
		t.Skip("set TETHER_E2E_MARIADB=1 to run the seed's MySQL steps against tetherworld")
	}
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "nsenter", "losetup", "dockerd", "busybox", "make", "go", "debootstrap", "mariadb", "jq")
	if _, err := lambdarun.FindRIE(); err != nil {
		testenv.Missing(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	// What `make world` builds on first use, built here first so that the
	// world's readiness wait below is the world's alone.
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := images.MySQL(ctx, root, "", testWriter{t}, 0); err != nil {
		t.Fatal(err)
	}
	r := start(t, "--instances", "2", "--azs", "1", "--profile", "instant", "--hosts", "real", "--functions", "rie", "--dir", t.TempDir())
	target, err := demo.EnvFileTarget(r.envFile)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := demo.New(target, t.TempDir(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	res, err := wt.RunMySQL(ctx)
	if err != nil {
		t.Fatalf("the seed typed by hand against make world: %v", err)
	}
	if !slices.Equal(res.Rows, []string{demo.PetRow}) || res.VolumeAfter.ID != res.VolumeBefore.ID ||
		res.Second.InstanceID == res.First.InstanceID || !res.CleanedUp {
		t.Fatalf("walkthrough result %+v", res)
	}
	if code := r.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit status %d after SIGINT\n%s", code, r.stderr.String())
	}
}

// testWriter logs what the walkthrough shows.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
