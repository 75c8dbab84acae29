package bench

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Entry is one line of the world's own log that marks a step of a handoff:
// ECS stopping or placing a task, SSM sending or finishing a command, EC2
// detaching or attaching a volume.
type Entry struct {
	Time  time.Time
	Msg   string
	Attrs map[string]string // volume, instance, task, command, document, status, after...
}

// journalMsgs are the world log messages a handoff's phases are read from
// (ecssim, ssmsim, ec2sim), and EC2's instance state changes (a dead
// host's terminated).
var journalMsgs = map[string]bool{
	msgStopRequested: true, msgTaskStopped: true, msgTaskPlaced: true,
	msgCommandSent: true, msgCommandRunning: true, msgCommandFinished: true,
	msgDetaching: true, msgDetached: true, msgAttaching: true, msgAttached: true,
	msgDetachWaiting: true, msgDetachForced: true, msgInstanceState: true,
}

const (
	msgStopRequested   = "task stop requested"
	msgTaskStopped     = "task stopped"
	msgTaskPlaced      = "task placed"
	msgCommandSent     = "command sent"
	msgCommandRunning  = "command running"
	msgCommandFinished = "command finished"
	msgDetaching       = "volume detaching"
	msgDetached        = "volume detached"
	msgDetachWaiting   = "detach waiting for the guest"
	msgDetachForced    = "detach forced" // a pending detach upgraded to force
	msgAttaching       = "volume attaching"
	msgAttached        = "volume attached"
	msgInstanceState   = "instance state" // ec2sim: an EC2 Instance State-change Notification sent
)

// Journal keeps the world's log lines that matter to the benchmark. It is
// an slog.Handler: the world logs into it (teed with the full log file).
type Journal struct {
	mu      sync.Mutex
	entries []Entry
}

// NewJournal returns an empty journal.
func NewJournal() *Journal { return &Journal{} }

// Handler is the slog.Handler that fills the journal.
func (j *Journal) Handler() slog.Handler { return journalHandler{j: j} }

// Entries returns the entries logged at or after since, oldest first.
func (j *Journal) Entries(since time.Time) []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	i, _ := slices.BinarySearchFunc(j.entries, since, func(e Entry, t time.Time) int { return e.Time.Compare(t) })
	return slices.Clone(j.entries[i:])
}

func (j *Journal) add(e Entry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	// Records arrive nearly in order; keep the slice sorted by time.
	i := len(j.entries)
	for i > 0 && j.entries[i-1].Time.After(e.Time) {
		i--
	}
	j.entries = slices.Insert(j.entries, i, e)
}

type journalHandler struct {
	j     *Journal
	attrs []slog.Attr
}

func (h journalHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h journalHandler) Handle(_ context.Context, r slog.Record) error {
	if !journalMsgs[r.Message] {
		return nil
	}
	e := Entry{Time: r.Time, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		e.Attrs[a.Key] = a.Value.Resolve().String()
	}
	r.Attrs(func(a slog.Attr) bool {
		e.Attrs[a.Key] = attrString(a.Value.Resolve())
		return true
	})
	h.j.add(e)
	return nil
}

// attrString renders a value; a one-element list (ssmsim's "instances")
// becomes its element.
func attrString(v slog.Value) string {
	if v.Kind() == slog.KindAny {
		if ss, ok := v.Any().([]string); ok && len(ss) == 1 {
			return ss[0]
		}
	}
	return v.String()
}

func (h journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return journalHandler{j: h.j, attrs: append(slices.Clip(h.attrs), as...)}
}

// WithGroup keeps the handler flat: the world's loggers use no groups for
// the keys read here.
func (h journalHandler) WithGroup(string) slog.Handler { return h }
