// Package awsproto speaks the AWS wire protocols the local world serves on one
// HTTP endpoint: EC2's query protocol (form in, XML out, <Response><Errors>
// errors), the awsQuery protocol (CloudFormation: <ErrorResponse>), and JSON
// 1.0/1.1 (ECS, SSM, SQS: X-Amz-Target in, JSON out, "__type" errors).
//
// Each service registers one handler; the Router checks the protocol, picks
// the handler from a flat table, and owns encoding, request ids and the
// journal of every call. Handlers return a value or an *Error.
//
// Every service is registered with its published model (package awsmodel):
// each request is checked against the operation's input shape before its
// handler runs, and refused as AWS refuses it. Registering a service that
// has no model is a startup error.
package awsproto

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tether-ecs/tether/test/world/awsmodel"
)

// Error is an AWS error as the wire carries it. Status is the HTTP status;
// Code is the error code clients switch on (InvalidVolume.NotFound,
// ClientException, RequestLimitExceeded...).
type Error struct {
	Status  int
	Code    string
	Message string
	// JSONType, when set, is the "__type" of a JSON error from an
	// awsQueryCompatible service (SQS): Code then also travels in the
	// x-amzn-query-error header, which SDKs read as the error code.
	JSONType string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf makes a client (4xx) error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadRequest makes the usual 400 client error.
func BadRequest(code, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, code, format, args...)
}

// Throttled is EC2's answer to a request over its rate limit.
func Throttled() *Error {
	return BadRequest("RequestLimitExceeded", "Request limit exceeded.")
}

// JSONHandler serves one JSON-protocol service. action is the part of
// X-Amz-Target after the dot; body is the raw request JSON.
type JSONHandler func(ctx context.Context, action string, body []byte) (any, error)

// QueryHandler serves one query-protocol service (EC2 or awsQuery).
type QueryHandler func(ctx context.Context, action string, form url.Values) (any, error)

// EC2Metadata is embedded in every EC2 response struct so the Router can set
// <requestId> as the first element, as EC2 does.
type EC2Metadata struct {
	RequestID string `xml:"requestId"`
}

func (m *EC2Metadata) setRequestID(id string) { m.RequestID = id }

type requestIDSetter interface{ setRequestID(string) }

// Call is one journal entry: what was asked and how it was answered.
type Call struct {
	Time      time.Time
	Service   string // ec2, ecs, ssm, sqs, cloudformation
	Action    string
	ErrorCode string // "" on success
	// Refused: the service's model refused the request (unknown operation,
	// unknown parameter, wrong type, broken constraint); the handler did
	// not run.
	Refused  bool
	Duration time.Duration
}

type jsonService struct {
	name      string
	namespace string // for "__type": com.amazonaws.ecs
	version   string // x-amz-json-1.0 or 1.1
	model     *awsmodel.Service
	handler   JSONHandler
}

type queryService struct {
	name    string
	xmlns   string
	ec2     bool // EC2 dialect (Response/Errors, requestId) vs awsQuery
	model   *awsmodel.Service
	handler QueryHandler
}

// Router is the world's single HTTP endpoint.
type Router struct {
	mu      sync.Mutex
	json    map[string]jsonService  // by X-Amz-Target prefix (before the dot)
	query   map[string]queryService // by form Version
	journal []Call
}

// NewRouter returns an empty router.
func NewRouter() *Router {
	return &Router{json: map[string]jsonService{}, query: map[string]queryService{}}
}

// HandleJSON registers a JSON-protocol service: name is its model's name
// (awsmodel: ecs, ssm, sqs), targetPrefix the part of X-Amz-Target before
// the dot (AmazonEC2ContainerServiceV20141113, AmazonSSM, AmazonSQS),
// namespace prefixes error types (com.amazonaws.ecs), jsonVersion is "1.0"
// or "1.1". Like http.ServeMux.Handle it panics on a registration that
// cannot work (here: no model, or one that disagrees), so a world never
// starts with a service whose requests go unchecked; AddJSON returns the
// error instead.
func (r *Router) HandleJSON(name, targetPrefix, namespace, jsonVersion string, h JSONHandler) {
	must(r.AddJSON(name, targetPrefix, namespace, jsonVersion, h))
}

// AddJSON is HandleJSON returning its error.
func (r *Router) AddJSON(name, targetPrefix, namespace, jsonVersion string, h JSONHandler) error {
	m, err := modelFor(name, awsmodel.ProtocolJSON)
	if err != nil {
		return err
	}
	if m.TargetPrefix() != targetPrefix || m.JSONVersion() != jsonVersion {
		return fmt.Errorf("awsproto: %s registered as %s (JSON %s), its model (%s) says %s (JSON %s)",
			name, targetPrefix, jsonVersion, m.Source(), m.TargetPrefix(), m.JSONVersion())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.json[targetPrefix] = jsonService{name: name, namespace: namespace, version: "application/x-amz-json-" + jsonVersion, model: m, handler: h}
	return nil
}

// HandleEC2 registers EC2 (query protocol, API version 2016-11-15). It
// panics if EC2's model is missing (see HandleJSON); AddEC2 returns the
// error instead.
func (r *Router) HandleEC2(h QueryHandler) { must(r.AddEC2(h)) }

// AddEC2 is HandleEC2 returning its error.
func (r *Router) AddEC2(h QueryHandler) error {
	m, err := modelFor("ec2", awsmodel.ProtocolEC2)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.query[m.APIVersion()] = queryService{name: "ec2", xmlns: "http://ec2.amazonaws.com/doc/" + m.APIVersion() + "/", ec2: true, model: m, handler: h}
	return nil
}

// HandleQuery registers an awsQuery-protocol service by its model's name
// and API version (CloudFormation: "cloudformation", "2010-05-15", xmlns
// http://cloudformation.amazonaws.com/doc/2010-05-15/). It panics on a
// registration that cannot work (see HandleJSON); AddQuery returns the
// error instead.
func (r *Router) HandleQuery(name, version, xmlns string, h QueryHandler) {
	must(r.AddQuery(name, version, xmlns, h))
}

// AddQuery is HandleQuery returning its error.
func (r *Router) AddQuery(name, version, xmlns string, h QueryHandler) error {
	m, err := modelFor(name, awsmodel.ProtocolQuery)
	if err != nil {
		return err
	}
	if m.APIVersion() != version {
		return fmt.Errorf("awsproto: %s registered for API version %s, its model (%s) is %s", name, version, m.Source(), m.APIVersion())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.query[version] = queryService{name: name, xmlns: xmlns, model: m, handler: h}
	return nil
}

func modelFor(name string, p awsmodel.Protocol) (*awsmodel.Service, error) {
	m, err := awsmodel.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("awsproto: service %q cannot be registered: %w", name, err)
	}
	if m.Protocol() != p {
		return nil, fmt.Errorf("awsproto: service %q registered as %s, its model (%s) speaks %s", name, p, m.Source(), m.Protocol())
	}
	return m, nil
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// Journal returns a copy of every call answered so far.
func (r *Router) Journal() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.journal...)
}

// Counts returns calls per "service:action" and, separately, per error code.
func (r *Router) Counts() (calls map[string]int, errs map[string]int) {
	calls, errs = map[string]int{}, map[string]int{}
	for _, c := range r.Journal() {
		calls[c.Service+":"+c.Action]++
		if c.ErrorCode != "" {
			errs[c.ErrorCode]++
		}
	}
	return calls, errs
}

func (r *Router) record(c Call) {
	r.mu.Lock()
	r.journal = append(r.journal, c)
	r.mu.Unlock()
}

// NewRequestID makes an id shaped like AWS's (a random UUID).
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

const maxBody = 16 << 20

func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	reqID := NewRequestID()
	if req.Method != http.MethodPost {
		writeQueryError(w, reqID, true, BadRequest("InvalidAction", "method %s is not supported; AWS APIs take POST", req.Method))
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		writeQueryError(w, reqID, true, BadRequest("InvalidRequest", "request body unreadable or over %d bytes", maxBody))
		return
	}
	if target := req.Header.Get("X-Amz-Target"); target != "" {
		r.serveJSON(w, req, reqID, target, body, start)
		return
	}
	r.serveQuery(w, req, reqID, body, start)
}

func (r *Router) serveJSON(w http.ResponseWriter, req *http.Request, reqID, target string, body []byte, start time.Time) {
	prefix, action, ok := strings.Cut(target, ".")
	r.mu.Lock()
	svc, known := r.json[prefix]
	r.mu.Unlock()
	if !ok || !known {
		writeJSONError(w, reqID, "application/x-amz-json-1.1", "", BadRequest("UnknownOperationException", "unknown target %q", target))
		return
	}
	if refusal := svc.model.CheckJSON(action, body); refusal != nil {
		e := fromRefusal(refusal)
		r.record(Call{Time: start, Service: svc.name, Action: action, ErrorCode: e.Code, Refused: true, Duration: time.Since(start)})
		writeJSONError(w, reqID, svc.version, svc.namespace, e)
		return
	}
	ctx := WithRequestID(req.Context(), reqID)
	out, err := svc.handler(ctx, action, body)
	call := Call{Time: start, Service: svc.name, Action: action, Duration: time.Since(start)}
	if err != nil {
		e := asError(err)
		call.ErrorCode = e.Code
		r.record(call)
		writeJSONError(w, reqID, svc.version, svc.namespace, e)
		return
	}
	r.record(call)
	if out == nil {
		out = struct{}{}
	}
	buf, err := json.Marshal(out)
	if err != nil {
		writeJSONError(w, reqID, svc.version, svc.namespace, Errorf(500, "InternalFailure", "encoding response: %v", err))
		return
	}
	w.Header().Set("Content-Type", svc.version)
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
	_, _ = w.Write(buf)
}

func (r *Router) serveQuery(w http.ResponseWriter, req *http.Request, reqID string, body []byte, start time.Time) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		writeQueryError(w, reqID, true, BadRequest("MalformedQueryString", "%v", err))
		return
	}
	for k, v := range req.URL.Query() { // the CLI may put some parameters in the URL
		if _, dup := form[k]; !dup {
			form[k] = v
		}
	}
	action, version := form.Get("Action"), form.Get("Version")
	r.mu.Lock()
	svc, known := r.query[version]
	r.mu.Unlock()
	if action == "" || !known {
		writeQueryError(w, reqID, true, BadRequest("InvalidAction", "The action %s is not valid for this web service (Version %q).", action, version))
		return
	}
	if refusal := svc.model.CheckQuery(action, form); refusal != nil {
		e := fromRefusal(refusal)
		r.record(Call{Time: start, Service: svc.name, Action: action, ErrorCode: e.Code, Refused: true, Duration: time.Since(start)})
		writeQueryError(w, reqID, svc.ec2, e)
		return
	}
	ctx := WithRequestID(req.Context(), reqID)
	out, err := svc.handler(ctx, action, form)
	call := Call{Time: start, Service: svc.name, Action: action, Duration: time.Since(start)}
	if err != nil {
		e := asError(err)
		call.ErrorCode = e.Code
		r.record(call)
		writeQueryError(w, reqID, svc.ec2, e)
		return
	}
	r.record(call)
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	root := xml.StartElement{Name: xml.Name{Local: action + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: svc.xmlns}}}
	if svc.ec2 {
		if s, ok := out.(requestIDSetter); ok {
			s.setRequestID(reqID)
		}
		err = enc.EncodeElement(out, root)
	} else {
		err = encodeAWSQuery(enc, root, action, reqID, out)
	}
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		writeQueryError(w, reqID, svc.ec2, Errorf(500, "InternalError", "encoding response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("X-Amzn-RequestId", reqID)
	_, _ = w.Write(buf.Bytes())
}

func encodeAWSQuery(enc *xml.Encoder, root xml.StartElement, action, reqID string, out any) error {
	if err := enc.EncodeToken(root); err != nil {
		return err
	}
	if out != nil {
		if err := enc.EncodeElement(out, xml.StartElement{Name: xml.Name{Local: action + "Result"}}); err != nil {
			return err
		}
	}
	meta := struct {
		RequestID string `xml:"RequestId"`
	}{reqID}
	if err := enc.EncodeElement(meta, xml.StartElement{Name: xml.Name{Local: "ResponseMetadata"}}); err != nil {
		return err
	}
	return enc.EncodeToken(root.End())
}

func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Errorf(503, "ServiceUnavailable", "%v", err)
	}
	return Errorf(500, "InternalFailure", "%v", err)
}

func fromRefusal(r *awsmodel.Refusal) *Error {
	return &Error{Status: r.Status, Code: r.Code, Message: r.Message, JSONType: r.JSONType}
}

func writeJSONError(w http.ResponseWriter, reqID, contentType, namespace string, e *Error) {
	base := e.Code
	if e.JSONType != "" {
		base = e.JSONType
		fault := "Sender"
		if e.Status >= 500 {
			fault = "Receiver"
		}
		w.Header().Set("X-Amzn-Query-Error", e.Code+";"+fault)
	}
	typ := base
	if namespace != "" {
		typ = namespace + "#" + base
	}
	body := map[string]string{"__type": typ}
	if e.Message != "" { // AWS sends some errors without one (UnknownOperationException)
		body["message"] = e.Message
	}
	buf, _ := json.Marshal(body)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.Header().Set("X-Amzn-ErrorType", base)
	w.WriteHeader(e.Status)
	_, _ = w.Write(buf)
}

func writeQueryError(w http.ResponseWriter, reqID string, ec2 bool, e *Error) {
	type errorXML struct {
		Type    string `xml:"Type,omitempty"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	var v any
	if ec2 {
		v = struct {
			XMLName   xml.Name   `xml:"Response"`
			Errors    []errorXML `xml:"Errors>Error"`
			RequestID string     `xml:"RequestID"`
		}{Errors: []errorXML{{Code: e.Code, Message: e.Message}}, RequestID: reqID}
	} else {
		typ := "Sender"
		if e.Status >= 500 {
			typ = "Receiver"
		}
		v = struct {
			XMLName   xml.Name `xml:"ErrorResponse"`
			Error     errorXML `xml:"Error"`
			RequestID string   `xml:"RequestId"`
		}{Error: errorXML{Type: typ, Code: e.Code, Message: e.Message}, RequestID: reqID}
	}
	buf, _ := xml.Marshal(v)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("X-Amzn-RequestId", reqID)
	w.WriteHeader(e.Status)
	_, _ = w.Write(append([]byte(xml.Header), buf...))
}

type requestIDKey struct{}

// WithRequestID stores the request id for handlers that log or echo it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the id of the request being served, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// List reads a query-protocol list: prefix.1, prefix.2, ... in index order.
// EC2 lists may skip numbers; the order of the indices is kept.
func List(form url.Values, prefix string) []string {
	type item struct {
		n int
		v string
	}
	var items []item
	for k, vs := range form {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok || strings.Contains(rest, ".") {
			continue
		}
		if n, err := strconv.Atoi(rest); err == nil && len(vs) > 0 {
			items = append(items, item{n, vs[0]})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].n < items[j].n })
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.v
	}
	return out
}

// Members reads a list of structures: prefix.N.Field... becomes one
// url.Values per N (keys without the "prefix.N." part), in index order.
func Members(form url.Values, prefix string) []url.Values {
	byIndex := map[int]url.Values{}
	for k, vs := range form {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		idx, field, ok := strings.Cut(rest, ".")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(idx)
		if err != nil {
			continue
		}
		if byIndex[n] == nil {
			byIndex[n] = url.Values{}
		}
		byIndex[n][field] = vs
	}
	keys := make([]int, 0, len(byIndex))
	for n := range byIndex {
		keys = append(keys, n)
	}
	sort.Ints(keys)
	out := make([]url.Values, len(keys))
	for i, n := range keys {
		out[i] = byIndex[n]
	}
	return out
}
