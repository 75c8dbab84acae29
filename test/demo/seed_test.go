package demo

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedPage is the seed walkthrough's text, kept in the repository
// (seed/walkthrough.txt: the AWS Compute Blog post, as the product's seed).
func seedPage(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("seed", "walkthrough.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// The page's non-breaking spaces, as a browser's copy gives them.
	return strings.ReplaceAll(string(raw), "\u00a0", " ")
}

// Every file under seed/ is the seed's text; the task definition differs
// only in its driver.
func TestSeedFilesAreTheWalkthroughsText(t *testing.T) {
	page := seedPage(t)
	entries, err := fs.ReadDir(seedFS, "seed")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range entries {
		name := e.Name()
		text := string(Seed(name))
		want := text
		switch name {
		case "README.md", "walkthrough.txt":
			continue
		case "get-outputs.sh", "drain-instance.sh":
			// What the seed's `cat > NAME << 'EOF'` writes.
			want = "cat > " + name + " << 'EOF'\n" + text + "EOF\n"
		case "taskdef.sh":
			if strings.Count(text, `"driver": "tether"`) != 1 || strings.Contains(text, "rexray/ebs") {
				t.Errorf("taskdef.sh: want exactly one driver, tether")
			}
			want = strings.Replace(text, `"driver": "tether"`, `"driver": "rexray/ebs"`, 1)
		}
		if name == "outputs.sh" {
			// Two commands the page sets apart: chmod +x, then the export.
			for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
				if !strings.Contains(page, "\n"+line+"\n") {
					t.Errorf("seed/%s: %q is not a line of the walkthrough", name, line)
				}
			}
			checked++
			continue
		}
		if !strings.Contains(page, want) {
			t.Errorf("seed/%s is not the walkthrough's text", name)
		}
		checked++
	}
	if checked != 12 {
		t.Errorf("checked %d seed files, want 12 (seed/README.md lists them)", checked)
	}
}
