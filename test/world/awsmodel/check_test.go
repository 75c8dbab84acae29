package awsmodel

import (
	"net/url"
	"strings"
	"testing"
)

type checkCase struct {
	name    string
	service string
	op      string
	body    string     // JSON protocols
	form    url.Values // EC2 and awsQuery
	code    string     // "": accepted
	message string     // the whole message, when set
	// contains are parts the message must hold, when message is not set.
	contains []string
	jsonType string
}

func runChecks(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc, err := Lookup(c.service)
			if err != nil {
				t.Fatal(err)
			}
			var r *Refusal
			if svc.Protocol() == ProtocolJSON {
				r = svc.CheckJSON(c.op, []byte(c.body))
			} else {
				r = svc.CheckQuery(c.op, c.form)
			}
			if c.code == "" {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
				return
			}
			if r == nil {
				t.Fatalf("accepted; want %s", c.code)
			}
			if r.Code != c.code || r.Status != 400 {
				t.Errorf("refused %d %s (%s); want 400 %s", r.Status, r.Code, r.Message, c.code)
			}
			if c.message != "" && r.Message != c.message {
				t.Errorf("message\n got %q\nwant %q", r.Message, c.message)
			}
			for _, part := range c.contains {
				if !strings.Contains(r.Message, part) {
					t.Errorf("message %q lacks %q", r.Message, part)
				}
			}
			if r.JSONType != c.jsonType {
				t.Errorf("JSON type %q, want %q", r.JSONType, c.jsonType)
			}
		})
	}
}

func form(kv ...string) url.Values {
	f := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

func TestEC2Query(t *testing.T) {
	attach := []string{"VolumeId", "vol-1", "InstanceId", "i-1", "Device", "/dev/xvdf"}
	runChecks(t, []checkCase{
		{name: "valid attach", service: "ec2", op: "AttachVolume", form: form(attach...)},
		{name: "missing required", service: "ec2", op: "AttachVolume", form: form("VolumeId", "vol-1", "InstanceId", "i-1"),
			code: "MissingParameter", message: "The request must contain the parameter Device"},
		{name: "missing required list", service: "ec2", op: "CreateTags", form: form("ResourceId.1", "vol-1"),
			code: "MissingParameter", message: "The request must contain the parameter Tag"},
		{name: "unknown parameter", service: "ec2", op: "AttachVolume", form: form(append(attach, "Foo", "1")...),
			code: "UnknownParameter", message: "The parameter Foo is not recognized"},
		{name: "names are case-sensitive", service: "ec2", op: "DeleteVolume", form: form("volumeId", "vol-1"),
			code: "UnknownParameter", message: "The parameter volumeId is not recognized"},
		{name: "action and version are not parameters", service: "ec2", op: "DeleteVolume",
			form: form("Action", "DeleteVolume", "Version", "2016-11-15", "VolumeId", "vol-1")},
		{name: "malformed integer", service: "ec2", op: "CreateVolume", form: form("AvailabilityZone", "us-west-2a", "Size", "ten"),
			code: "InvalidParameterValue", message: "Value (ten) for parameter size is invalid. Expected: 'integer'."},
		{name: "integer out of int32", service: "ec2", op: "CreateVolume", form: form("Size", "4294967296"),
			code: "InvalidParameterValue"},
		{name: "boolean is true or false", service: "ec2", op: "DeleteVolume", form: form("VolumeId", "vol-1", "DryRun", "yes"),
			code: "InvalidParameterValue", message: "Value (yes) for parameter dryRun is invalid. Expected: 'boolean'."},
		{name: "invalid enum", service: "ec2", op: "CreateVolume", form: form("AvailabilityZone", "us-west-2a", "Size", "1", "VolumeType", "gp9"),
			code: "InvalidParameterValue", message: "Value (gp9) for parameter volumeType is invalid. Valid values: standard, io1, io2, gp2, sc1, st1, gp3."},
		{name: "tag specification with tags", service: "ec2", op: "CreateVolume", form: form("AvailabilityZone", "us-west-2a", "Size", "1",
			"TagSpecification.1.ResourceType", "volume", "TagSpecification.1.Tag.1.Key", "Name", "TagSpecification.1.Tag.1.Value", "v",
			"TagSpecification.1.Tag.2.Key", "tether:cluster", "TagSpecification.1.Tag.2.Value", "c")},
		{name: "nested unknown in a tag", service: "ec2", op: "CreateVolume", form: form("TagSpecification.1.Tag.1.Keys", "Name"),
			code: "UnknownParameter", message: "The parameter Keys is not recognized"},
		{name: "nested enum", service: "ec2", op: "CreateVolume", form: form("TagSpecification.1.ResourceType", "vollume"),
			code: "InvalidParameterValue", contains: []string{"Value (vollume) for parameter tagSpecification.1.ResourceType is invalid"}},
		{name: "filters with values", service: "ec2", op: "DescribeVolumes", form: form("Filter.1.Name", "tag:Name", "Filter.1.Value.1", "a",
			"Filter.1.Value.2", "b", "Filter.2.Name", "status", "Filter.2.Value.1", "available", "MaxResults", "5")},
		{name: "list indices may skip numbers", service: "ec2", op: "DescribeVolumes", form: form("VolumeId.1", "vol-1", "VolumeId.3", "vol-3")},
		{name: "filter member unknown", service: "ec2", op: "DescribeVolumes", form: form("Filter.1.Name", "a", "Filter.1.Values.1", "b"),
			code: "UnknownParameter", message: "The parameter Values is not recognized"},
		{name: "list index zero", service: "ec2", op: "DescribeVolumes", form: form("VolumeId.0", "vol-1"),
			code: "UnknownParameter", message: "The parameter 0 is not recognized"},
		{name: "list without index", service: "ec2", op: "DescribeVolumes", form: form("VolumeId", "vol-1"),
			code: "UnknownParameter", message: "The parameter VolumeId is not recognized"},
		{name: "scalar with a child", service: "ec2", op: "DeleteVolume", form: form("VolumeId", "vol-1", "VolumeId.1", "vol-2"),
			code: "UnknownParameter", message: "The parameter 1 is not recognized"},
		{name: "action outside the served set", service: "ec2", op: "RunInstances", form: form(),
			code: "InvalidAction", message: "The action RunInstances is not valid for this web service."},
	})
}

func TestJSONCoral(t *testing.T) {
	comment := func(n int) string {
		return `{"DocumentName":"AWS-RunShellScript","InstanceIds":["i-0123456789abcdef0"],"Comment":"` + strings.Repeat("c", n) + `"}`
	}
	runChecks(t, []checkCase{
		{name: "comment of 100", service: "ssm", op: "SendCommand", body: comment(100)},
		{name: "comment of 101", service: "ssm", op: "SendCommand", body: comment(101), code: "ValidationException",
			message: "1 validation error detected: Value '" + strings.Repeat("c", 101) + "' at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100"},
		// Length counts code points, not bytes: 100 two-byte characters fit.
		{name: "comment of 100 code points", service: "ssm", op: "SendCommand",
			body: `{"DocumentName":"AWS-RunShellScript","Comment":"` + strings.Repeat("é", 100) + `"}`},
		{name: "required member missing", service: "ssm", op: "SendCommand", body: `{}`, code: "ValidationException",
			message: "1 validation error detected: Value null at 'documentName' failed to satisfy constraint: Member must not be null"},
		{name: "null is absent", service: "ssm", op: "SendCommand", body: `{"DocumentName":null}`, code: "ValidationException",
			contains: []string{"Value null at 'documentName'"}},
		{name: "unknown members are ignored", service: "ssm", op: "SendCommand", body: `{"DocumentName":"AWS-RunShellScript","Foo":1}`},
		{name: "pattern", service: "ssm", op: "SendCommand", body: `{"DocumentName":"a b"}`, code: "ValidationException",
			message: `1 validation error detected: Value 'a b' at 'documentName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\-.:/]{3,128}$`},
		{name: "list items", service: "ssm", op: "SendCommand", body: `{"DocumentName":"AWS-RunShellScript","InstanceIds":["i-0123456789abcdef0","x"]}`,
			code: "ValidationException",
			message: `1 validation error detected: Value '[i-0123456789abcdef0, x]' at 'instanceIds' failed to satisfy constraint: ` +
				`Member must satisfy constraint: [Member must satisfy regular expression pattern: (^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)]`},
		{name: "list length", service: "ssm", op: "SendCommand", body: `{"DocumentName":"AWS-RunShellScript","Targets":[` +
			strings.Repeat(`{"Key":"tag:a","Values":["1"]},`, 5) + `{"Key":"tag:a","Values":["1"]}]}`, code: "ValidationException",
			message: "1 validation error detected: Value '[" + strings.Repeat("Target(key=tag:a, values=[1]), ", 5) + "Target(key=tag:a, values=[1])]'" +
				" at 'targets' failed to satisfy constraint: Member must have length less than or equal to 5"},
		{name: "range", service: "ssm", op: "ListCommands", body: `{"MaxResults":51}`, code: "ValidationException",
			message: "1 validation error detected: Value '51' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 50"},
		{name: "range low", service: "ssm", op: "SendCommand", body: `{"DocumentName":"AWS-RunShellScript","TimeoutSeconds":29}`, code: "ValidationException",
			message: "1 validation error detected: Value '29' at 'timeoutSeconds' failed to satisfy constraint: Member must have value greater than or equal to 30"},
		{name: "enum", service: "ssm", op: "SendCommand", body: `{"DocumentName":"AWS-RunShellScript","DocumentHashType":"md5"}`, code: "ValidationException",
			message: "1 validation error detected: Value 'md5' at 'documentHashType' failed to satisfy constraint: Member must satisfy enum value set: [Sha256, Sha1]"},
		{name: "nested structure", service: "ssm", op: "SendCommand", body: `{"DocumentName":"AWS-RunShellScript","CloudWatchOutputConfig":{"CloudWatchLogGroupName":""}}`,
			code:    "ValidationException",
			message: "1 validation error detected: Value '' at 'cloudWatchOutputConfig.cloudWatchLogGroupName' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{name: "nested list of structures", service: "ssm", op: "ListCommands", body: `{"Filters":[{"key":"Status","value":"Success"},{"key":"Colour","value":""}]}`,
			code: "ValidationException",
			message: "2 validation errors detected: Value 'Colour' at 'filters.2.member.key' failed to satisfy constraint: Member must satisfy enum value set: " +
				"[InvokedAfter, InvokedBefore, Status, ExecutionStage, DocumentName]; Value '' at 'filters.2.member.value' failed to satisfy constraint: " +
				"Member must have length greater than or equal to 1"},
		{name: "nested required", service: "ssm", op: "ListCommands", body: `{"Filters":[{"key":"Status"}]}`, code: "ValidationException",
			message: "1 validation error detected: Value null at 'filters.1.member.value' failed to satisfy constraint: Member must not be null"},
		{name: "sensitive value is not shown", service: "ssm", op: "PutParameter",
			body: `{"Name":"p","Value":"secret","Tags":[{"Key":"k","Value":"v&"}],"Description":"` + strings.Repeat("d", 1025) + `"}`,
			code: "ValidationException", contains: []string{"2 validation errors detected: ", "at 'description'", "Value 'v&' at 'tags.1.member.value'"}},
		{name: "map keys", service: "ssm", op: "SendCommand", body: `{"DocumentName":"AWS-RunShellScript","Parameters":{"commands":["ls"]}}`},
		{name: "ten errors at most", service: "ssm", op: "SendCommand", body: `{"DocumentName":"AWS-RunShellScript","InstanceIds":["x"],` +
			`"DocumentHash":"` + strings.Repeat("h", 257) + `","DocumentHashType":"x","TimeoutSeconds":1,"Comment":"` + strings.Repeat("c", 101) + `",` +
			`"OutputS3Region":"x","OutputS3BucketName":"x","OutputS3KeyPrefix":"` + strings.Repeat("k", 501) + `","MaxConcurrency":"0","MaxErrors":"x",` +
			`"CloudWatchOutputConfig":{"CloudWatchLogGroupName":""}}`,
			code: "ValidationException", contains: []string{"10 validation errors detected: "}},
		{name: "ECS says ClientException", service: "ecs", op: "DescribeTasks", body: `{"cluster":"c"}`, code: "ClientException",
			message: "1 validation error detected: Value null at 'tasks' failed to satisfy constraint: Member must not be null"},
		{name: "ECS tag pattern", service: "ecs", op: "TagResource", body: `{"resourceArn":"arn","tags":[{"key":"a&b","value":"v"}]}`,
			code: "ClientException", message: `1 validation error detected: Value 'a&b' at 'tags.1.member.key' failed to satisfy constraint: ` +
				`Member must satisfy regular expression pattern: ([\p{L}\p{Z}\p{N}_.:/=+\-@]*)`},
		// ECS's own limit (1 to 100) is not in its model: the simulator answers it.
		{name: "ECS maxResults is not in the model", service: "ecs", op: "ListTasks", body: `{"maxResults":101}`},
		{name: "ECS enum", service: "ecs", op: "ListTasks", body: `{"desiredStatus":"DONE"}`, code: "ClientException",
			message: "1 validation error detected: Value 'DONE' at 'desiredStatus' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, PENDING, STOPPED]"},
		{name: "unknown operation", service: "ssm", op: "Frobnicate", body: `{}`, code: "UnknownOperationException"},
	})
}

// TestJSONTypes: wrong JSON types are SerializationException, with the
// messages measured on Athena (see jsonScalar).
func TestJSONTypes(t *testing.T) {
	se := func(name, body, message string) checkCase {
		return checkCase{name: name, service: "ssm", op: "ListCommands", body: body, code: "SerializationException", message: message}
	}
	runChecks(t, []checkCase{
		se("string for integer", `{"MaxResults":"1"}`, "STRING_VALUE can not be converted to an Integer"),
		se("boolean for integer", `{"MaxResults":true}`, "TRUE_VALUE can not be converted to an Integer"),
		se("list for integer", `{"MaxResults":[1]}`, "Start of list found where not expected"),
		se("object for integer", `{"MaxResults":{"a":1}}`, "Start of structure or map found where not expected."),
		se("decimal for integer", `{"MaxResults":1.5}`, "DECIMAL_VALUE can not be converted to an Integer"),
		se("number for string", `{"NextToken":1}`, "NUMBER_VALUE can not be converted to a String"),
		se("scalar for list", `{"Filters":"x"}`, "Expected list or null"),
		se("number in a list of structures", `{"Filters":[1]}`, "Expected null"),
		se("malformed JSON", `{`, ""),
		se("empty body", ``, ""),
		se("null body", `null`, ""),
		se("list body", `[]`, "Start of list found where not expected"),
		{name: "null member is absent", service: "ssm", op: "ListCommands", body: `{"MaxResults":null}`},
		{name: "string for boolean", service: "ssm", op: "PutParameter", body: `{"Name":"n","Value":"v","Overwrite":"true"}`,
			code: "SerializationException", message: "STRING_VALUE can not be converted to a Boolean"},
		{name: "timestamp is epoch seconds", service: "ssm", op: "GetOpsSummary", body: `{}`},
	})
}

func TestSQSQueryCompatible(t *testing.T) {
	runChecks(t, []checkCase{
		{name: "valid", service: "sqs", op: "SendMessage", body: `{"QueueUrl":"http://q/123456789012/q","MessageBody":"m"}`},
		{name: "missing", service: "sqs", op: "SendMessage", body: `{"QueueUrl":"http://q/123456789012/q"}`, code: "MissingParameter",
			message: "The request must contain the parameter MessageBody.", jsonType: "MissingRequiredParameterException"},
		// Attribute names are the handler's to refuse (InvalidAttributeName).
		{name: "attribute names unchecked", service: "sqs", op: "GetQueueAttributes", body: `{"QueueUrl":"u","AttributeNames":["Nope"]}`},
		{name: "types still", service: "sqs", op: "ReceiveMessage", body: `{"QueueUrl":"u","MaxNumberOfMessages":"10"}`,
			code: "SerializationException", message: "STRING_VALUE can not be converted to an Integer"},
	})
}

func TestAWSQuery(t *testing.T) {
	runChecks(t, []checkCase{
		{name: "valid", service: "cloudformation", op: "CreateStack", form: form("StackName", "s", "TemplateBody", "{}",
			"Parameters.member.1.ParameterKey", "K", "Parameters.member.1.ParameterValue", "V", "Capabilities.member.1", "CAPABILITY_IAM",
			"Tags.member.1.Key", "k", "Tags.member.1.Value", "v")},
		{name: "empty list", service: "cloudformation", op: "CreateStack", form: form("StackName", "s", "Capabilities", "")},
		{name: "missing", service: "cloudformation", op: "CreateStack", form: form("TemplateBody", "{}"), code: "ValidationError",
			message: "1 validation error detected: Value null at 'stackName' failed to satisfy constraint: Member must not be null"},
		{name: "list items need .member", service: "cloudformation", op: "CreateStack", form: form("StackName", "s", "Capabilities.1", "CAPABILITY_IAM"),
			code: "ValidationError", message: "The parameter 1 is not recognized"},
		{name: "unknown", service: "cloudformation", op: "DescribeStacks", form: form("StackNames", "s"),
			code: "ValidationError", message: "The parameter StackNames is not recognized"},
		{name: "nested path", service: "cloudformation", op: "CreateStack", form: form("StackName", "s", "Tags.member.1.Key", "k", "Tags.member.1.Value", ""),
			code:    "ValidationError",
			message: "1 validation error detected: Value '' at 'tags.1.member.value' failed to satisfy constraint: Member must have length greater than or equal to 1"},
		{name: "enum list", service: "cloudformation", op: "CreateStack", form: form("StackName", "s", "Capabilities.member.1", "CAPABILITY_ALL"),
			code: "ValidationError", message: "1 validation error detected: Value '[CAPABILITY_ALL]' at 'capabilities' failed to satisfy constraint: " +
				"Member must satisfy constraint: [Member must satisfy enum value set: [CAPABILITY_IAM, CAPABILITY_NAMED_IAM, CAPABILITY_AUTO_EXPAND]]"},
		{name: "range", service: "cloudformation", op: "CreateStack", form: form("StackName", "s", "TimeoutInMinutes", "0"),
			code: "ValidationError", message: "1 validation error detected: Value '0' at 'timeoutInMinutes' failed to satisfy constraint: Member must have value greater than or equal to 1"},
		{name: "malformed integer", service: "cloudformation", op: "CreateStack", form: form("StackName", "s", "TimeoutInMinutes", "soon"),
			code: "ValidationError", contains: []string{"Value 'soon' at 'timeoutInMinutes'"}},
		{name: "list length", service: "cloudformation", op: "CreateStack", form: form("StackName", "s", "NotificationARNs.member.1", "a",
			"NotificationARNs.member.2", "a", "NotificationARNs.member.3", "a", "NotificationARNs.member.4", "a", "NotificationARNs.member.5", "a", "NotificationARNs.member.6", "a"),
			code: "ValidationError", message: "1 validation error detected: Value '[a, a, a, a, a, a]' at 'notificationARNs' failed to satisfy constraint: Member must have length less than or equal to 5"},
		// Auto Scaling's XML-safe pattern, written with \u escapes and surrogate pairs.
		{name: "autoscaling pattern", service: "autoscaling", op: "DescribeAutoScalingGroups", form: form("AutoScalingGroupNames.member.1", "a\x01b"),
			code: "ValidationError", contains: []string{"at 'autoScalingGroupNames' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 255, " +
				"Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: "}},
		{name: "autoscaling astral", service: "autoscaling", op: "DescribeAutoScalingGroups", form: form("AutoScalingGroupNames.member.1", "a😀")},
	})
}
