package ecssim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tether-ecs/tether/test/world/awsproto"
)

// ECS error codes the world answers with (the real API's).
const (
	codeClient             = "ClientException"
	codeInvalidParameter   = "InvalidParameterException"
	codeClusterNotFound    = "ClusterNotFoundException"
	codeServiceNotFound    = "ServiceNotFoundException"
	codeServiceNotActive   = "ServiceNotActiveException"
	codeTargetNotFound     = "TargetNotFoundException"
	codeAttributeLimit     = "AttributeLimitExceededException"
	codeUnknownOperation   = "UnknownOperationException"
	codeServer             = "ServerException"
	codeUnsupportedFeature = "UnsupportedFeatureException"
)

func clientError(format string, args ...any) *awsproto.Error {
	return awsproto.BadRequest(codeClient, format, args...)
}

func invalidParameter(format string, args ...any) *awsproto.Error {
	return awsproto.BadRequest(codeInvalidParameter, format, args...)
}

func clusterNotFound() *awsproto.Error {
	return awsproto.BadRequest(codeClusterNotFound, "Cluster not found.")
}

func serviceNotFound() *awsproto.Error {
	return awsproto.BadRequest(codeServiceNotFound, "Service not found.")
}

func serviceNotActive() *awsproto.Error {
	return awsproto.BadRequest(codeServiceNotActive, "Service was not ACTIVE.")
}

func serverError(format string, args ...any) *awsproto.Error {
	return awsproto.Errorf(http.StatusInternalServerError, codeServer, format, args...)
}

// decode reads a request strictly: a member the world does not implement is
// an error naming it, never silently ignored.
func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return awsproto.BadRequest("SerializationException", "malformed JSON: %v", err)
		case errors.As(err, &typ):
			return awsproto.BadRequest("SerializationException", "field %s: expected %s, got %s", typ.Field, typ.Type, typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field"): // encoding/json has no typed error for this
			field := strings.TrimPrefix(err.Error(), "json: unknown field ")
			return invalidParameter("parameter %s is not supported by the local ECS world", field)
		}
		return awsproto.BadRequest("SerializationException", "%v", err)
	}
	return nil
}

// epoch is a timestamp as ECS's JSON carries it: seconds since the epoch,
// with milliseconds as the fraction. The zero time is omitted by omitempty
// only through a pointer, so optional times are *epoch.
type epoch time.Time

func (e epoch) MarshalJSON() ([]byte, error) {
	ms := time.Time(e).UnixMilli()
	return []byte(strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64)), nil
}

func (e *epoch) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("timestamp %s: %w", b, err)
	}
	sec, frac := math.Modf(f)
	*e = epoch(time.Unix(int64(sec), int64(frac*1e9)).UTC())
	return nil
}

func epochPtr(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(t)
	return &e
}

// eventTime is the EventBridge detail's timestamp form (millisecond RFC 3339).
func eventTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

type keyValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// attributeJSON is ECS's Attribute: name, optional value, and on
// PutAttributes/ListAttributes the target.
type attributeJSON struct {
	Name       string  `json:"name"`
	Value      *string `json:"value,omitempty"`
	TargetType string  `json:"targetType,omitempty"`
	TargetID   string  `json:"targetId,omitempty"`
}

type failureJSON struct {
	Arn    string `json:"arn,omitempty"`
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
}

type resourceJSON struct {
	Name           string   `json:"name"`
	Type           string   `json:"type"`
	DoubleValue    float64  `json:"doubleValue"`
	LongValue      int64    `json:"longValue"`
	IntegerValue   int32    `json:"integerValue"`
	StringSetValue []string `json:"stringSetValue,omitempty"`
}

type placementConstraintJSON struct {
	Type       string `json:"type"`
	Expression string `json:"expression,omitempty"`
}

type placementStrategyJSON struct {
	Type  string `json:"type"`
	Field string `json:"field,omitempty"`
}

type tagJSON struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type awsvpcConfigurationJSON struct {
	Subnets        []string `json:"subnets"`
	SecurityGroups []string `json:"securityGroups,omitempty"`
	AssignPublicIP string   `json:"assignPublicIp,omitempty"`
}

type networkConfigurationJSON struct {
	AwsvpcConfiguration *awsvpcConfigurationJSON `json:"awsvpcConfiguration,omitempty"`
}

type loadBalancerJSON struct {
	TargetGroupArn   string `json:"targetGroupArn,omitempty"`
	LoadBalancerName string `json:"loadBalancerName,omitempty"`
	ContainerName    string `json:"containerName,omitempty"`
	ContainerPort    int32  `json:"containerPort,omitempty"`
}

// paging is what every ListX request says about pages.
type paging struct {
	NextToken  string `json:"nextToken"`
	MaxResults *int32 `json:"maxResults"`
}

// listPage answers a ListX call: one page of items under key, and
// nextToken when more follow. A page is pageSize long unless maxResults
// asks otherwise (1 to limit). The token is the offset, opaque to clients
// as ECS's are.
func listPage[T any](key string, items []T, p paging, pageSize, limit int32) (any, error) {
	start := 0
	if p.NextToken != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(p.NextToken, "tok-"))
		if err != nil || n < 0 || n > len(items) || !strings.HasPrefix(p.NextToken, "tok-") {
			return nil, invalidParameter("Invalid nextToken.")
		}
		start = n
	}
	size := pageSize
	if p.MaxResults != nil {
		if *p.MaxResults < 1 || *p.MaxResults > limit {
			return nil, invalidParameter("maxResults must be between 1 and %d.", limit)
		}
		size = *p.MaxResults
	}
	out := map[string]any{key: items[start:]}
	if end := start + int(size); end < len(items) {
		out[key], out["nextToken"] = items[start:end], "tok-"+strconv.Itoa(end)
	}
	return out, nil
}

// nonNil returns s, or an empty list where ECS answers [] rather than
// leaving the member out.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// checkInclude refuses an include value the action does not know.
func checkInclude(include []string, known ...string) error {
	for _, inc := range include {
		if !slices.Contains(known, inc) {
			return invalidParameter("Invalid include value %s.", inc)
		}
	}
	return nil
}

// missing is the failure ECS answers for a reference it cannot find: the
// reference spelt as the long ARN.
func (s *Server) missing(resource, clusterName, ref string) failureJSON {
	return failureJSON{Arn: s.refArn(resource, clusterName, ref), Reason: "MISSING"}
}

// describeEach serves DescribeX of one kind of resource of a cluster: each
// reference found is described, each other one is a MISSING failure.
func describeEach[T, J any](s *Server, c *cluster, resource string, refs []string, find func(ref string) *T, out func(*T) J) ([]J, []failureJSON) {
	found, failures := []J{}, []failureJSON{}
	for _, ref := range refs {
		if r := find(ref); r != nil {
			found = append(found, out(r))
		} else {
			failures = append(failures, s.missing(resource, c.name, ref))
		}
	}
	return found, failures
}
