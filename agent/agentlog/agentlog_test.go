package agentlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestEachKeyOnceLastValueFirstPlace(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(New(&buf, false, nil)).With("volume", "db", "volumeId", "vol-1")
	log = log.With("command", "mount", "volumeId", "vol-0123456789abcdef0")
	log.Info("mounted", "volume", "db", "generation", 3)
	line := strings.TrimSpace(buf.String())
	for _, key := range []string{`"volume"`, `"volumeId"`, `"command"`, `"generation"`} {
		if n := strings.Count(line, key+":"); n != 1 {
			t.Errorf("%s appears %d times in %s", key, n, line)
		}
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("not JSON: %q: %v", line, err)
	}
	if got["volumeId"] != "vol-0123456789abcdef0" || got["msg"] != "mounted" || got["level"] != "INFO" {
		t.Errorf("line = %v", got)
	}
	if strings.Index(line, `"volume"`) > strings.Index(line, `"command"`) {
		t.Errorf("a repeated key moved: %s", line)
	}
}

func TestJournalPriorityPrefix(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(New(&buf, true, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Error("e")
	log.Warn("w")
	log.Info("i")
	log.Debug("d")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	for i, want := range []string{"<3>{", "<4>{", "<6>{", "<7>{"} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want prefix %q", i, lines, want)
		}
	}
}

func TestIsJournalComparesTheStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if !IsJournal(f) {
		t.Error("the named stream is not taken for the journal")
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1))
	if IsJournal(f) {
		t.Error("another stream is taken for the journal")
	}
	t.Setenv("JOURNAL_STREAM", "")
	if IsJournal(f) {
		t.Error("no JOURNAL_STREAM, yet journal")
	}
}
