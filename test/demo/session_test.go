package demo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-ecs/tether/test/testenv"
)

func newTestSession(t *testing.T) (*Session, *bytes.Buffer) {
	t.Helper()
	testenv.RequireCommands(t, "bash")
	var out bytes.Buffer
	s, err := NewSession(t.TempDir(), []string{"PATH=" + os.Getenv("PATH"), "GIVEN=from-env"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	return s, &out
}

// One terminal: a variable set by one snippet is there for the next;
// exported ones reach child processes, the others do not (as the seed's
// drain-instance.sh does not see TaskDefinitionArn).
func TestSessionCarriesShellVariablesLikeOneTerminal(t *testing.T) {
	s, out := newTestSession(t)
	ctx := context.Background()
	if err := s.RunText(ctx, "set", "export Exported=one\nPlain=\"two words\"\nSub=$(echo three | tr a-z A-Z)\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "child.sh"), []byte("echo \"child sees [$Exported] [$Plain] [$GIVEN]\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.RunText(ctx, "use", "echo \"shell sees [$Exported] [$Plain] [$Sub]\"\n./child.sh\n"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"shell sees [one] [two words] [THREE]", "child sees [one] [] [from-env]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := s.Var("Plain"); got != "two words" {
		t.Errorf("Var(Plain) = %q", got)
	}
	if got := s.Var("GIVEN"); got != "" {
		t.Errorf("Var(GIVEN) = %q: the environment is not the snippets' doing", got)
	}
}

// A failing command (also inside $(...) | jq) fails the snippet, and the
// variables of the earlier snippets survive it.
func TestSessionFailingSnippet(t *testing.T) {
	s, _ := newTestSession(t)
	ctx := context.Background()
	if err := s.RunText(ctx, "ok", "Kept=yes\n"); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"plain":    "false\necho not reached\n",
		"pipeline": "X=$(false | cat)\n",
		"and-list": "true && false\n",
	} {
		if err := s.RunText(ctx, name, text); !errors.Is(err, ErrSnippet) {
			t.Errorf("%s: err = %v, want ErrSnippet", name, err)
		}
	}
	if err := s.RunText(ctx, "after", "test \"$Kept\" = yes\n"); err != nil {
		t.Errorf("a variable set before a failure is gone: %v", err)
	}
}

func TestSessionShowsSnippetsFoldedAndKeepsAllOutput(t *testing.T) {
	s, out := newTestSession(t)
	if err := s.Run(context.Background(), "taskdef.sh"); err != nil {
		t.Fatal(err)
	}
	shown := out.String()
	if !strings.Contains(shown, "$ cat > mysql-taskdef.json << EOF") || !strings.Contains(shown, "> … 62 lines …\n    > EOF\n") {
		t.Errorf("heredoc not shown folded:\n%s", shown)
	}
	if err := s.RunText(context.Background(), "long", "seq 1 100\n"); err != nil {
		t.Fatal(err)
	}
	shown = out.String()
	for _, want := range []string{"│ 12\n", "│ … 85 more lines (all of it in session.log) …\n", "│ 98\n", "│ 100\n"} {
		if !strings.Contains(shown, want) {
			t.Errorf("folded output lacks %q:\n%s", want, shown)
		}
	}
	if strings.Contains(shown, "│ 50\n") {
		t.Errorf("line 50 of 100 shown: output not folded")
	}
	log, err := os.ReadFile(filepath.Join(s.Dir(), SessionLog))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "\n50\n") {
		t.Errorf("%s lacks the folded lines", SessionLog)
	}
}

// The heredoc fills the task definition from the shell's variables, as
// the seed's does.
func TestTaskDefinitionHeredocFillsVariables(t *testing.T) {
	s, _ := newTestSession(t)
	ctx := context.Background()
	if err := s.RunText(ctx, "outputs", "export CWLogGroupName=lg AWSRegion=us-west-2 AvailabilityZone=us-west-2a\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx, "taskdef.sh"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(s.Dir(), TaskDefFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"awslogs-group": "lg"`, `"expression": "attribute:ecs.availability-zone==us-west-2a"`, `"driver": "tether"`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("%s lacks %s", TaskDefFile, want)
		}
	}
	pw, err := TaskDefinitionPassword(filepath.Join(s.Dir(), TaskDefFile))
	if err != nil || pw != "my-secret-pw" {
		t.Errorf("password %q, %v", pw, err)
	}
}
