package bench

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/tether-ecs/tether/test/world/awsmodel"
	"github.com/tether-ecs/tether/test/world/awsproto"
)

// Calls are AWS calls by "service:Action" (ec2:AttachVolume): every
// attempt that reached the world, and of those the ones a rate limit
// refused.
type Calls struct {
	All       map[string]int
	Throttled map[string]int
}

// NewCalls is an empty count.
func NewCalls() Calls { return Calls{All: map[string]int{}, Throttled: map[string]int{}} }

// Add adds o into c.
func (c Calls) Add(o Calls) {
	for k, v := range o.All {
		c.All[k] += v
	}
	for k, v := range o.Throttled {
		c.Throttled[k] += v
	}
}

// Service is the calls to one service ("ec2"), every action.
func (c Calls) Service(svc string) int { return c.count(c.All, svc, nil) }

// Mutating is the calls to svc that change something: every action but
// the reads (Describe*, Get*, List*).
func (c Calls) Mutating(svc string) int {
	return c.count(c.All, svc, func(action string) bool { return !isRead(action) })
}

// ThrottledTotal is every throttled call, all services.
func (c Calls) ThrottledTotal() int {
	n := 0
	for _, v := range c.Throttled {
		n += v
	}
	return n
}

// Of lists svc's calls by action ("AttachVolume 2, DescribeVolumes 9"),
// most first.
func (c Calls) Of(svc string) string { return countList(c.All, svc+":") }

func (c Calls) count(m map[string]int, svc string, keep func(string) bool) int {
	n := 0
	for k, v := range m {
		s, action, _ := strings.Cut(k, ":")
		if s == svc && (keep == nil || keep(action)) {
			n += v
		}
	}
	return n
}

// isRead says whether an action only reads: EC2's, ECS's and SSM's reads
// are all named Describe*, Get* or List*.
func isRead(action string) bool {
	for _, p := range []string{"Describe", "Get", "List"} {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}

// throttleCodes are the error codes of a call refused by a request-rate
// limit: EC2's RequestLimitExceeded, ECS's and SSM's ThrottlingException.
var throttleCodes = map[string]bool{"RequestLimitExceeded": true, "ThrottlingException": true}

// attempt is one request the bench itself sent to the world.
type attempt struct {
	key       string // service:Action
	throttled bool
}

// Meter counts the bench's own requests to the world, each attempt of
// each call (the SDK's retries included), by service and action, read off
// the wire as the world's router reads them. Subtracted from the router's
// journal over the same window, what remains is what tether's functions
// called: the only other clients of the world's endpoint.
type Meter struct {
	next http.RoundTripper

	mu       sync.Mutex
	attempts []attempt
}

// NewMeter wraps next (nil: http.DefaultTransport).
func NewMeter(next http.RoundTripper) *Meter {
	if next == nil {
		next = http.DefaultTransport
	}
	return &Meter{next: next}
}

// Client is an HTTP client sending through the meter.
func (m *Meter) Client() *http.Client { return &http.Client{Transport: m} }

// RoundTrip sends the request and, once the world answered, counts it.
func (m *Meter) RoundTrip(req *http.Request) (*http.Response, error) {
	key, err := requestKey(req)
	if err != nil {
		return nil, err
	}
	resp, err := m.next.RoundTrip(req)
	if err != nil {
		// Not answered: the router journals only what it answers.
		return resp, err
	}
	code, err := errorCode(resp)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	m.mu.Lock()
	m.attempts = append(m.attempts, attempt{key: key, throttled: throttleCodes[code]})
	m.mu.Unlock()
	return resp, nil
}

// Mark is the number of attempts so far: a window starts or ends there.
func (m *Meter) Mark() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.attempts)
}

// Since counts the attempts from mark on.
func (m *Meter) Since(mark int) Calls {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewCalls()
	for _, a := range m.attempts[min(mark, len(m.attempts)):] {
		c.All[a.key]++
		if a.throttled {
			c.Throttled[a.key]++
		}
	}
	return c
}

// servicesByTarget and servicesByVersion name the world's services the
// way its router does (by their models), from a request's X-Amz-Target
// prefix (JSON protocols) or its form's Version (query protocols).
var servicesByTarget, servicesByVersion = func() (map[string]string, map[string]string) {
	byTarget, byVersion := map[string]string{}, map[string]string{}
	for _, name := range awsmodel.Names() {
		m, err := awsmodel.Lookup(name)
		if err != nil {
			continue
		}
		if m.Protocol() == awsmodel.ProtocolJSON {
			byTarget[m.TargetPrefix()] = name
		} else {
			byVersion[m.APIVersion()] = name
		}
	}
	return byTarget, byVersion
}()

// requestKey is "service:Action" of a request, read as the router reads
// it; the body is left for the transport to send.
func requestKey(req *http.Request) (string, error) {
	if target := req.Header.Get("X-Amz-Target"); target != "" {
		prefix, action, _ := strings.Cut(target, ".")
		if svc, ok := servicesByTarget[prefix]; ok {
			return svc + ":" + action, nil
		}
		return "", fmt.Errorf("bench: meter: unknown X-Amz-Target %q", target)
	}
	body, err := readBody(&req.Body)
	if err != nil {
		return "", err
	}
	if req.GetBody == nil {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", fmt.Errorf("bench: meter: request body: %w", err)
	}
	svc, ok := servicesByVersion[form.Get("Version")]
	if !ok || form.Get("Action") == "" {
		return "", fmt.Errorf("bench: meter: query request with Action %q, Version %q", form.Get("Action"), form.Get("Version"))
	}
	return svc + ":" + form.Get("Action"), nil
}

// queryErrorCode finds the code of a query-protocol error (EC2's
// <Response><Errors><Error><Code>, CloudFormation's <ErrorResponse>).
var queryErrorCode = regexp.MustCompile(`<Code>([^<]+)</Code>`)

// errorCode is the AWS error code of an answer ("" for a success): JSON
// protocols name it in X-Amzn-ErrorType, query protocols in the body
// (read and put back).
func errorCode(resp *http.Response) (string, error) {
	if resp.StatusCode < 300 {
		return "", nil
	}
	if t := resp.Header.Get("X-Amzn-ErrorType"); t != "" {
		code, _, _ := strings.Cut(t, ":")
		return code, nil
	}
	body, err := readBody(&resp.Body)
	if err != nil {
		return "", err
	}
	if m := queryErrorCode.FindSubmatch(body); m != nil {
		return string(m[1]), nil
	}
	return fmt.Sprintf("HTTP %d", resp.StatusCode), nil
}

// readBody reads *rc whole and replaces it with a reader of the same bytes.
func readBody(rc *io.ReadCloser) ([]byte, error) {
	if *rc == nil || *rc == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(*rc)
	(*rc).Close()
	if err != nil {
		return nil, fmt.Errorf("bench: meter: read body: %w", err)
	}
	*rc = io.NopCloser(bytes.NewReader(b))
	return b, nil
}

// Window is a stretch of a world's life whose calls are counted: from
// Open to Close, the router's journal (every call the world answered)
// minus the bench's own (the meter).
type Window struct {
	router  *awsproto.Router
	meter   *Meter
	journal int
	own     int
}

// OpenWindow starts counting now.
func OpenWindow(r *awsproto.Router, m *Meter) Window {
	return Window{router: r, meter: m, journal: len(r.Journal()), own: m.Mark()}
}

// Close returns tether's calls in the window: the journal's since Open
// less the bench's. The bench calls synchronously, so each of its
// attempts in the window is in the journal too; one that is not means the
// counting is broken, and is an error.
func (w Window) Close() (Calls, error) {
	journal := w.router.Journal()
	all := journalCalls(journal[min(w.journal, len(journal)):])
	return subtract(all, w.meter.Since(w.own))
}

// journalCalls counts the router's journal entries.
func journalCalls(calls []awsproto.Call) Calls {
	c := NewCalls()
	for _, call := range calls {
		k := call.Service + ":" + call.Action
		c.All[k]++
		if throttleCodes[call.ErrorCode] {
			c.Throttled[k]++
		}
	}
	return c
}

// subtract is all less own, by key; own must be part of all.
func subtract(all, own Calls) (Calls, error) {
	out := NewCalls()
	maps.Copy(out.All, all.All)
	maps.Copy(out.Throttled, all.Throttled)
	var bad []string
	for _, pair := range []struct{ dst, src map[string]int }{{out.All, own.All}, {out.Throttled, own.Throttled}} {
		for _, k := range slices.Sorted(maps.Keys(pair.src)) {
			n := pair.src[k]
			if pair.dst[k] < n {
				bad = append(bad, fmt.Sprintf("%s: the bench sent %d, the world journaled %d", k, n, pair.dst[k]))
				n = pair.dst[k]
			}
			if pair.dst[k] -= n; pair.dst[k] == 0 {
				delete(pair.dst, k)
			}
		}
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("bench: counting calls: %s", strings.Join(bad, "; "))
	}
	return out, nil
}
