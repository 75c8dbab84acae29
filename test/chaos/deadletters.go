package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/eventbus"
)

// checkDeadLetters counts the messages in tether's dead-letter queues and
// explains each from what the functions logged about it (the dispatcher
// logs every message it hands back with its id and why). A message no log
// line explains is a violation.
func (r *run) checkDeadLetters(rep *Report) {
	queues := r.w.Deployment().Queues
	var outputs []string
	for _, id := range slices.Sorted(maps.Keys(queues)) {
		if !strings.HasSuffix(id, "DeadLetterQueue") {
			continue
		}
		q := queues[id]
		st := q.Stats()
		rep.DLQ[id] = st.Visible + st.InFlight + st.Delayed
		if rep.DLQ[id] == 0 {
			continue
		}
		if outputs == nil {
			for _, out := range r.w.FunctionOutput() {
				outputs = append(outputs, out)
			}
		}
		for _, m := range drain(q) {
			why := explain(outputs, m.MessageID)
			if why == "" {
				r.watch.violate("dead-letter", "", "%s holds message %s that no function log explains: %.300s", id, m.MessageID, m.Body)
				continue
			}
			rep.DLQExplained = append(rep.DLQExplained, fmt.Sprintf("%s %s: %s", id, m.MessageID, why))
		}
	}
}

// drain receives every message of a queue (nothing else reads it).
func drain(q *eventbus.Queue) []eventbus.Message {
	var out []eventbus.Message
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hide := time.Hour
	for {
		ms, err := q.Receive(ctx, eventbus.ReceiveOptions{Max: 10, Visibility: &hide})
		if err != nil || len(ms) == 0 {
			return out
		}
		out = append(out, ms...)
	}
}

// explain finds the last warning or error a function logged about the
// message. A message the functions handled every time without one went
// to the dead-letter queue because it came back while its batch still
// ran (the invocation outlived the visibility timeout): that is said, with
// the longest invocation that handled it.
func explain(outputs []string, messageID string) string {
	why, handled, longest := "", 0, 0.0
	for _, out := range outputs {
		for _, line := range strings.Split(out, "\n") {
			if !strings.Contains(line, messageID) {
				continue
			}
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) != nil {
				continue
			}
			if l["level"] != "WARN" && l["level"] != "ERROR" {
				if m := fmt.Sprint(l["msg"]); m == "key handed back" || m == "key converged" {
					handled++
					if ms, ok := l["tookMs"].(float64); ok && ms > longest {
						longest = ms
					}
				}
				continue
			}
			why = fmt.Sprint(l["msg"])
			for _, k := range []string{"why", "error"} {
				if v, ok := l[k]; ok {
					why += ": " + fmt.Sprint(v)
				}
			}
		}
	}
	if why == "" && handled > 0 {
		why = fmt.Sprintf("handled without error %d times (a pass took up to %s): redelivered while its batch still ran, the invocation outliving the queue's visibility timeout",
			handled, time.Duration(longest)*time.Millisecond)
	}
	return why
}

var (
	idPatterns = []*regexp.Regexp{
		regexp.MustCompile(`vol-[0-9a-f]+`), regexp.MustCompile(`i-[0-9a-f]+`), regexp.MustCompile(`[0-9a-f]{32}`),
		regexp.MustCompile(`(svc|data|job)-[0-9]+`), regexp.MustCompile(`task-[A-Za-z0-9]+-scratch`), regexp.MustCompile(`[0-9.]+m?s\b`),
		regexp.MustCompile(`ecs-[a-z]+-[0-9]+-[a-z]+-[0-9a-f]+`), regexp.MustCompile(`ecs-svc/[0-9]+`), regexp.MustCompile(`nvme[0-9]+n1`),
	}
	idMarks = []string{"vol-X", "i-X", "TASK", "NAME", "task-X-scratch", "Ns", "ecs-DOCKERVOL", "ecs-svc/N", "nvmeNn1"}
)

// failureKind groups stoppedReasons that differ only in ids and numbers.
func failureKind(reason string) string {
	for i, p := range idPatterns {
		reason = p.ReplaceAllString(reason, idMarks[i])
	}
	if len(reason) > 140 {
		reason = reason[:140] + "..."
	}
	return reason
}
