// Package agentlog is tether-agent's log handler: slog JSON lines in which
// every key appears once (a key set twice, by a logger's With and a call's
// arguments, keeps its last value at its first place), prefixed with the
// syslog priority (<3> error, <4> warning, <6> info, <7> debug) when stderr
// is connected to the systemd journal.
//
// Why the prefix and not the journal's native protocol: journald reads a
// "<N>" prefix on each line of a service's stdout/stderr as the line's
// priority (sd-daemon(3), SyslogLevelPrefix= defaults to on), which needs
// no socket, no library and no second code path; the line stays the same
// JSON an operator greps. The prefix is written only when JOURNAL_STREAM
// names stderr (systemd.exec(5)), so the SSM documents' stderr and tests'
// logs stay plain JSON lines.
package agentlog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Handler writes deduplicated JSON lines to a writer.
type Handler struct {
	out      *output
	opts     slog.HandlerOptions
	attrs    []slog.Attr // from With, keys already qualified by groups
	groups   string      // "a.b." while inside WithGroup("a").WithGroup("b")
	priority bool
}

type output struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a handler writing to w; priority adds the journal's "<N>"
// prefix to each line.
func New(w io.Writer, priority bool, opts *slog.HandlerOptions) *Handler {
	h := &Handler{out: &output{w: w}, priority: priority}
	if opts != nil {
		h.opts = *opts
	}
	return h
}

// ForStderr is the handler for the process's stderr, with the priority
// prefix when stderr is the journal's stream.
func ForStderr(stderr *os.File) *Handler {
	return New(stderr, IsJournal(stderr), nil)
}

// IsJournal reports whether f is the journal stream systemd connected:
// JOURNAL_STREAM is "<device>:<inode>" of it.
func IsJournal(f *os.File) bool {
	env := os.Getenv("JOURNAL_STREAM")
	if env == "" {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return env == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	min := slog.LevelInfo
	if h.opts.Level != nil {
		min = h.opts.Level.Level()
	}
	return l >= min
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), qualify(h.groups, attrs)...)
	return &c
}

// WithGroup implements slog.Handler: keys inside a group are written as
// "group.key" (tether's log lines are flat).
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = h.groups + name + "."
	return &c
}

func qualify(groups string, attrs []slog.Attr) []slog.Attr {
	if groups == "" {
		return attrs
	}
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = slog.Attr{Key: groups + a.Key, Value: a.Value}
	}
	return out
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	all := append([]slog.Attr(nil), h.attrs...)
	var own []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		own = append(own, a)
		return true
	})
	all = append(all, qualify(h.groups, own)...)
	index := map[string]int{}
	var attrs []slog.Attr
	for _, a := range all {
		if a.Equal(slog.Attr{}) {
			continue
		}
		if i, seen := index[a.Key]; seen {
			attrs[i] = a // the last value, at the first place
			continue
		}
		index[a.Key] = len(attrs)
		attrs = append(attrs, a)
	}
	flat := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	flat.AddAttrs(attrs...)
	var buf bytes.Buffer
	if h.priority {
		buf.WriteString(prefix(r.Level))
	}
	if err := slog.NewJSONHandler(&buf, &h.opts).Handle(ctx, flat); err != nil {
		return err
	}
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := h.out.w.Write(buf.Bytes())
	return err
}

// prefix is the syslog priority journald reads at the start of a line.
func prefix(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}
