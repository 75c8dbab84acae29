package ssmsim

import (
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// JSON shapes of SSM's responses (the botocore service model's member
// names). Timestamps are epoch seconds, except GetCommandInvocation's
// Execution*DateTime, which SSM sends as ISO 8601 strings.

type epoch time.Time

func (e epoch) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(time.Time(e).UnixMilli())/1000, 'f', 3, 64)), nil
}

func epochOf(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(t)
	return &e
}

func isoOf(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

type wireTarget struct {
	Key    string
	Values []string
}

type wireCommand struct {
	CommandId             string
	DocumentName          string
	DocumentVersion       string
	Comment               string
	ExpiresAfter          *epoch `json:",omitempty"`
	Parameters            map[string][]string
	InstanceIds           []string
	Targets               []wireTarget
	RequestedDateTime     *epoch
	Status                string
	StatusDetails         string
	MaxConcurrency        string
	MaxErrors             string
	TargetCount           int
	CompletedCount        int
	ErrorCount            int
	DeliveryTimedOutCount int
	TimeoutSeconds        int
	OutputS3Region        string
}

type wirePlugin struct {
	Name                   string
	Status                 string
	StatusDetails          string
	ResponseCode           int
	ResponseStartDateTime  *epoch `json:",omitempty"`
	ResponseFinishDateTime *epoch `json:",omitempty"`
	Output                 string
	StandardOutputUrl      string
	StandardErrorUrl       string
	OutputS3Region         string
}

type wireInvocation struct {
	CommandId         string
	InstanceId        string
	InstanceName      string
	Comment           string
	DocumentName      string
	DocumentVersion   string
	RequestedDateTime *epoch
	Status            string
	StatusDetails     string
	TraceOutput       string
	StandardOutputUrl string
	StandardErrorUrl  string
	CommandPlugins    []wirePlugin
}

type wireGetInvocation struct {
	CommandId              string
	InstanceId             string
	Comment                string
	DocumentName           string
	DocumentVersion        string
	PluginName             string
	ResponseCode           int
	ExecutionStartDateTime string
	ExecutionElapsedTime   string
	ExecutionEndDateTime   string
	Status                 string
	StatusDetails          string
	StandardOutputContent  string
	StandardOutputUrl      string
	StandardErrorContent   string
	StandardErrorUrl       string
	CloudWatchOutputConfig struct {
		CloudWatchLogGroupName  string
		CloudWatchOutputEnabled bool
	}
}

type wireInstanceInfo struct {
	InstanceID       string `json:"InstanceId"`
	PingStatus       string
	LastPingDateTime *epoch
	AgentVersion     string
	IsLatestVersion  bool
	PlatformType     string
	PlatformName     string
	PlatformVersion  string
	ResourceType     string
	ComputerName     string
}

// Output limits SSM applies (service model: StandardOutputContent 24,000,
// StandardErrorContent 8,000 characters; CommandPlugin Output 2,500).
const (
	maxStdout       = 24000
	maxStderr       = 8000
	maxPluginOutput = 2500
)

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// pluginOutput is the combined output Run Command shows in
// ListCommandInvocations: stdout, then stderr after SSM's separator.
func pluginOutput(stdout, stderr string) string {
	out := stdout
	if stderr != "" {
		out += "\n----------ERROR-------\n" + stderr
	}
	return truncate(out, maxPluginOutput)
}

var (
	instanceIDPattern = regexp.MustCompile(`^(i-(\w{8}|\w{17})|mi-\w{17})$`)
	commandIDPattern  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// paginate pages a list with an opaque offset token; SSM's MaxResults is
// 1..capMax (callers check their own minimum).
func paginate[T any](items []T, maxResults *int, capMax int, token string) ([]T, string, error) {
	start := 0
	if token != "" {
		raw, err := base64.RawURLEncoding.DecodeString(token)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(raw), "offset:"))
		if err != nil || err2 != nil || !strings.HasPrefix(string(raw), "offset:") || n < 0 || n > len(items) {
			return nil, "", awsproto.BadRequest("InvalidNextToken", "The specified token is not valid.")
		}
		start = n
	}
	limit := capMax
	if maxResults != nil {
		limit = min(*maxResults, capMax)
	}
	end := min(len(items), start+limit)
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(end)))
	}
	return items[start:end], next, nil
}
