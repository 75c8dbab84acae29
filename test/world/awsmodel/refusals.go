package awsmodel

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Refusal is AWS's answer to a request its model rejects.
type Refusal struct {
	Status  int    // HTTP status
	Code    string // the error code clients see and switch on
	Message string
	// JSONType, when set, is the JSON "__type" of a service that is
	// awsQueryCompatible (SQS): Code then travels in the x-amzn-query-error
	// header, which SDKs read as the code.
	JSONType string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

func badRequest(code, format string, args ...any) *Refusal {
	return &Refusal{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

// serialization is a JSON request whose types do not fit the model.
func serialization(msg string) *Refusal {
	return &Refusal{Status: http.StatusBadRequest, Code: "SerializationException", Message: msg}
}

// jsonRootRefusal answers a body that is not a JSON object. Measured on
// Athena: malformed JSON, an empty body, null or a string get a
// SerializationException without a message; a list gets "Start of list
// found where not expected".
func jsonRootRefusal(v *value, err error) *Refusal {
	if err == nil && v.k == vList {
		return serialization("Start of list found where not expected")
	}
	return serialization("")
}

// style is how a service words its refusals.
type style interface {
	unknownOperation(op string) *Refusal
	unknownParameter(p unknownParam) *Refusal
	malformed(m malformedValue) *Refusal
	refuse(vs []violation) *Refusal
}

func (s *Service) style() style {
	switch s.m.name {
	case "ec2":
		return ec2Style{s}
	case "sqs":
		return sqsStyle{s}
	case "ecs":
		// ECS answers its model's rules with ClientException and the usual
		// validation message (floci's ECS, probed against AWS: "1 validation
		// error detected: Value null at 'containerDefinitions.1.member.
		// firelensConfiguration.type' failed to satisfy constraint: Member
		// must not be null"). ECS's own limits that its model does not carry
		// (taskIds at most 100, maxResults 1 to 100) are InvalidParameter-
		// Exception from the simulator.
		return coralStyle{s: s, code: "ClientException"}
	case "cloudformation", "autoscaling":
		// awsQuery services: ValidationError with the same message shape
		// (localstack's test_stacks snapshot: "1 validation error detected:
		// Value '*@da591fa3_$' at 'stackName' failed to satisfy constraint:
		// Member must satisfy regular expression pattern: ...").
		return coralStyle{s: s, code: "ValidationError"}
	default:
		// SSM: "1 validation error detected: Value '...' at 'comment' failed
		// to satisfy constraint: Member must have length less than or equal
		// to 100" (aws-samples/bottlerocket-images-cache#11).
		return coralStyle{s: s, code: "ValidationException"}
	}
}

// checksEnums: SQS, which kept its query protocol's checks when it moved to
// JSON, answers a bad attribute name with InvalidAttributeName ("Unknown
// Attribute FifoQueue.", localstack's test_sqs snapshot, both protocols),
// not with an enum violation; its handlers check attribute names.
func (s *Service) checksEnums() bool { return s.m.name != "sqs" }

// maxReported is how many violations one message lists (dynalite, which
// mirrors DynamoDB's validation, stops at 10).
const maxReported = 10

// coralStyle is the validation of AWS's JSON and awsQuery services:
// "N validation error(s) detected: Value 'x' at 'path' failed to satisfy
// constraint: Member must ...; ...".
type coralStyle struct {
	s    *Service
	code string
}

func (c coralStyle) unknownOperation(op string) *Refusal {
	if c.s.Protocol() == ProtocolJSON {
		// Measured on Athena: no message at all.
		return &Refusal{Status: http.StatusBadRequest, Code: "UnknownOperationException"}
	}
	return badRequest("InvalidAction", "The action %s is not valid for this web service.", op)
}

// unknownParameter: AWS's answer to an awsQuery parameter its model does
// not know is not documented; the world refuses it (a misspelled or
// misplaced parameter would otherwise be silently dropped) with EC2's
// wording.
func (c coralStyle) unknownParameter(p unknownParam) *Refusal {
	return badRequest(c.code, "The parameter %s is not recognized", p.segment)
}

// malformed: an awsQuery value that is not of its type. AWS's wording is
// not documented; this one names the member as the validation messages do.
func (c coralStyle) malformed(m malformedValue) *Refusal {
	return badRequest(c.code, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must be a valid %s",
		m.v.s, m.text, m.expected)
}

func (c coralStyle) refuse(vs []violation) *Refusal {
	if len(vs) == 0 {
		return nil
	}
	if len(vs) > maxReported {
		vs = vs[:maxReported]
	}
	msgs := make([]string, len(vs))
	for i, v := range vs {
		msgs[i] = c.s.coralMessage(v)
	}
	plural := "s"
	if len(vs) == 1 {
		plural = ""
	}
	return badRequest(c.code, "%d validation error%s detected: %s", len(vs), plural, strings.Join(msgs, "; "))
}

// coralMessage words one violation: "Value 'x' at 'path' failed to satisfy
// constraint: Member must ...". A missing member is "Value null"; a
// sensitive one is "Value at" (Lambda's environment variables, Cognito's
// password).
func (s *Service) coralMessage(v violation) string {
	val := "null"
	switch {
	case v.v == nil:
	case v.sh.sensitive:
		val = ""
	default:
		val = "'" + s.render(v.sh, v.v) + "'"
	}
	at := "Value " + val + " at '" + v.path + "'"
	if val == "" {
		at = "Value at '" + v.path + "'"
	}
	return at + " failed to satisfy constraint: " + s.ruleText(v)
}

func (s *Service) ruleText(v violation) string {
	switch v.rule {
	case ruleRequired:
		return "Member must not be null"
	case ruleItems:
		var item *shape
		switch v.scope {
		case "Member":
			item = s.shape(v.sh.item)
		case "Map keys":
			item = s.shape(v.sh.key)
		default:
			item = s.shape(v.sh.val)
		}
		texts := make([]string, len(v.rules))
		for i, r := range v.rules {
			texts[i] = ruleWords(item, r)
		}
		return v.scope + " must satisfy constraint: [" + strings.Join(texts, ", ") + "]"
	}
	return ruleWords(v.sh, ruleText{v.rule, v.bound})
}

func ruleWords(sh *shape, r ruleText) string {
	switch r.rule {
	case ruleMaxLength:
		return "Member must have length less than or equal to " + num(r.bound)
	case ruleMinLength:
		return "Member must have length greater than or equal to " + num(r.bound)
	case ruleMaxValue:
		return "Member must have value less than or equal to " + num(r.bound)
	case ruleMinValue:
		return "Member must have value greater than or equal to " + num(r.bound)
	case rulePattern:
		return "Member must satisfy regular expression pattern: " + sh.pattern
	case ruleEnum:
		return "Member must satisfy enum value set: [" + strings.Join(sh.enum, ", ") + "]"
	}
	return "Member must be valid"
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// render writes a value as AWS's messages show it, the way Java prints it:
// strings bare, lists [a, b], maps {k=v}, structures Shape(member=value)
// (SSM: "Value '[Target(key=tag:a, values=[1]), ...]' at 'targets'").
func (s *Service) render(sh *shape, v *value) string {
	if v == nil || v.k == vNull {
		return "null"
	}
	switch sh.kind {
	case kList:
		item := s.shape(sh.item)
		parts := make([]string, len(v.list))
		for i, el := range v.list {
			parts[i] = s.renderMember(item, el)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case kMap:
		val := s.shape(sh.val)
		parts := make([]string, len(v.obj))
		for i, f := range v.obj {
			parts[i] = f.name + "=" + s.renderMember(val, f.v)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case kStructure:
		var parts []string
		for _, m := range sh.members {
			if mv := v.get(m.wireName()); mv != nil && mv.k != vNull {
				parts = append(parts, lowerFirst(m.name)+"="+s.renderMember(s.shape(m.shape), mv))
			}
		}
		return sh.name + "(" + strings.Join(parts, ", ") + ")"
	case kBlob:
		n := len(v.s) * 3 / 4
		return fmt.Sprintf("java.nio.HeapByteBuffer[pos=0 lim=%d cap=%d]", n, n)
	}
	return v.s
}

func (s *Service) renderMember(sh *shape, v *value) string {
	if sh.sensitive {
		return "*** Sensitive Data Redacted ***"
	}
	return s.render(sh, v)
}

// ec2Style is EC2's: one error, the first found. Codes and the wording of
// MissingParameter and UnknownParameter follow EC2's API reference ("Error
// codes") and real answers ("The request must contain the parameter
// SpotInstanceRequestId", "The parameter instanceId is not recognized" for
// a lower-case name: parameter names are case-sensitive); the tails of
// InvalidParameterValue follow "Value (x) for parameter y is invalid. ..."
// as EC2 words it for volumeId and maxResults.
type ec2Style struct{ s *Service }

func (ec2Style) unknownOperation(op string) *Refusal {
	return badRequest("InvalidAction", "The action %s is not valid for this web service.", op)
}

func (ec2Style) unknownParameter(p unknownParam) *Refusal {
	return badRequest("UnknownParameter", "The parameter %s is not recognized", p.segment)
}

func (ec2Style) malformed(m malformedValue) *Refusal {
	return badRequest("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected: '%s'.", m.v.s, m.param, m.expected)
}

func (e ec2Style) refuse(vs []violation) *Refusal {
	for _, v := range vs {
		if v.rule == ruleRequired {
			return badRequest("MissingParameter", "The request must contain the parameter %s", v.param)
		}
	}
	if len(vs) == 0 {
		return nil
	}
	v := vs[0]
	param := lowerFirst(v.param)
	shown := e.s.render(v.sh, v.v)
	switch v.rule {
	case ruleEnum:
		return badRequest("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Valid values: %s.", shown, param, strings.Join(v.sh.enum, ", "))
	case ruleMaxValue:
		return badRequest("InvalidParameterValue", "Value ( %s ) for parameter %s is invalid. Expecting a value less than or equal to %s.", shown, param, num(v.bound))
	case ruleMinValue:
		return badRequest("InvalidParameterValue", "Value ( %s ) for parameter %s is invalid. Expecting a value greater than or equal to %s.", shown, param, num(v.bound))
	case ruleMaxLength:
		return badRequest("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Length must be at most %s.", shown, param, num(v.bound))
	case ruleMinLength:
		return badRequest("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Length must be at least %s.", shown, param, num(v.bound))
	case rulePattern:
		return badRequest("InvalidParameterValue", "Value (%s) for parameter %s is invalid. It must match %s.", shown, param, v.sh.pattern)
	}
	return badRequest("InvalidParameterValue", "Value (%s) for parameter %s is invalid. %s", shown, param, e.s.ruleText(v))
}

// sqsStyle is SQS's since it speaks JSON: query-era codes in the
// x-amzn-query-error header (localstack's test_sqs snapshot, recorded
// against AWS: code MissingParameter, __type MissingRequiredParameterException,
// "The request must contain the parameter MessageGroupId.").
type sqsStyle struct{ s *Service }

func (q sqsStyle) unknownOperation(op string) *Refusal {
	return coralStyle{s: q.s}.unknownOperation(op)
}

func (q sqsStyle) unknownParameter(p unknownParam) *Refusal {
	return coralStyle{s: q.s, code: "ValidationException"}.unknownParameter(p)
}

func (q sqsStyle) malformed(m malformedValue) *Refusal {
	return coralStyle{s: q.s, code: "ValidationException"}.malformed(m)
}

func (q sqsStyle) refuse(vs []violation) *Refusal {
	for _, v := range vs {
		if v.rule == ruleRequired {
			r := badRequest("MissingParameter", "The request must contain the parameter %s.", v.param)
			r.JSONType = "MissingRequiredParameterException"
			return r
		}
	}
	if len(vs) == 0 {
		return nil
	}
	r := coralStyle{s: q.s, code: "InvalidParameterValue"}.refuse(vs)
	r.JSONType = "InvalidParameterValueException"
	return r
}
