package functions_test

// What an operator gets from template.yaml: alarms on what goes wrong, a
// dashboard, the outputs, and Lambda's recursive-loop setting on the
// function that feeds the retry queue.

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tether-ecs/tether/functions/internal/hosts"
	"github.com/tether-ecs/tether/functions/internal/reconcile"
)

// emittedMetrics are the EMF metric names the functions write (namespace
// Tether, dimension Cluster): reconcile.Metrics and hosts.Metrics, the
// lists their code uses.
func emittedMetrics(t *testing.T) []string {
	t.Helper()
	if len(reconcile.Metrics) < 5 || len(hosts.Metrics) < 5 {
		t.Fatalf("reconcile.Metrics = %v, hosts.Metrics = %v", reconcile.Metrics, hosts.Metrics)
	}
	return append(slices.Clone(reconcile.Metrics), hosts.Metrics...)
}

// alarm is one CloudWatch alarm, its metrics flattened (one for a plain
// alarm, the MetricStats of a metric-math alarm).
type alarm struct {
	id      string
	props   *yaml.Node
	metrics []alarmMetric
}

type alarmMetric struct{ namespace, name, dimension, dimValue string }

func alarms(t *testing.T, tp template) []alarm {
	t.Helper()
	var out []alarm
	for _, id := range tp.resources("AWS::CloudWatch::Alarm") {
		p := get(tp.resource(t, id), "Properties")
		a := alarm{id: id, props: p}
		metric := func(n *yaml.Node, ns, name string) alarmMetric {
			m := alarmMetric{namespace: ns, name: name}
			if d := get(n, "Dimensions", "0"); d != nil {
				m.dimension, m.dimValue = get(d, "Name").Value, intrinsic(get(d, "Value"))
			}
			return m
		}
		if ns := get(p, "Namespace"); ns != nil {
			a.metrics = append(a.metrics, metric(p, ns.Value, get(p, "MetricName").Value))
		}
		for _, q := range metricQueries(p) {
			if m := get(q, "MetricStat", "Metric"); m != nil {
				a.metrics = append(a.metrics, metric(m, get(m, "Namespace").Value, get(m, "MetricName").Value))
			}
		}
		out = append(out, a)
	}
	return out
}

func metricQueries(p *yaml.Node) []*yaml.Node {
	if ms := get(p, "Metrics"); ms != nil {
		return ms.Content
	}
	return nil
}

// covering returns the alarms on metric namespace/name, and the dimension
// values they cover.
func covering(as []alarm, namespace, name string) (ids []string, values []string) {
	for _, a := range as {
		for _, m := range a.metrics {
			if m.namespace == namespace && m.name == name {
				if !slices.Contains(ids, a.id) {
					ids = append(ids, a.id)
				}
				values = append(values, m.dimValue)
			}
		}
	}
	slices.Sort(values)
	return ids, values
}

func TestAlarms(t *testing.T) {
	tp := loadTemplate(t)
	as := alarms(t, tp)
	functions := []string{"!Ref DrainFunction", "!Ref HostsFunction", "!Ref SweepFunction", "!Ref TaskStateFunction"}
	queues := consumedQueues(t, tp)
	var queueNames []string
	for q := range queues {
		queueNames = append(queueNames, "!GetAtt "+q+".QueueName")
	}
	slices.Sort(queueNames)
	emitted := emittedMetrics(t)

	for _, c := range []struct {
		what, namespace, metric string
		cover                   []string // dimension values every alarm together must cover; nil: the cluster
	}{
		{"function errors", "AWS/Lambda", "Errors", functions},
		{"recursive-loop drops", "AWS/Lambda", "RecursiveInvocationsDropped", functions},
		{"throttled invocations", "AWS/Lambda", "Throttles", functions},
		{"the oldest message's age", "AWS/SQS", "ApproximateAgeOfOldestMessage", queueNames},
		{"throttled AWS calls", "Tether", "Throttles", nil},
		{"force detaches", "Tether", "ForceDetaches", nil},
		{"slow handoffs", "Tether", "HandoffDuration", nil},
		{"holds timed out", "Tether", "HoldsTimedOut", nil},
		{"hung hosts fenced", "Tether", "HungHostsFenced", nil},
		{"hung hosts stopped", "Tether", "HungHostsStopped", nil},
	} {
		ids, values := covering(as, c.namespace, c.metric)
		want := c.cover
		if want == nil {
			want = []string{"!Ref ClusterName"}
			if !slices.Contains(emitted, c.metric) {
				t.Errorf("alarm on %s: the reconciler does not emit %s (it emits %v)", c.what, c.metric, emitted)
			}
		}
		if !slices.Equal(values, want) {
			t.Errorf("alarms on %s (%s %s) %v cover %v, want %v", c.what, c.namespace, c.metric, ids, values, want)
		}
	}
	// Any force detach, hold let go with volumes attached, or hung host
	// alarms at once.
	ids, _ := covering(as, "Tether", "ForceDetaches")
	for _, m := range []string{"HoldsTimedOut", "HungHostsFenced", "HungHostsStopped"} {
		more, _ := covering(as, "Tether", m)
		ids = append(ids, more...)
	}
	for _, a := range as {
		if slices.Contains(ids, a.id) && (get(a.props, "Statistic").Value != "Sum" || get(a.props, "Threshold").Value != "0" ||
			get(a.props, "ComparisonOperator").Value != "GreaterThanThreshold" || get(a.props, "EvaluationPeriods").Value != "1") {
			t.Errorf("%s does not fire on the first force detach", a.id)
		}
	}
	// A sweep that stopped running: fewer invocations than one per period,
	// no data counting as none, over more than one schedule interval.
	stopped := false
	for _, a := range as {
		p := a.props
		if len(a.metrics) == 1 && a.metrics[0] == (alarmMetric{"AWS/Lambda", "Invocations", "FunctionName", "!Ref SweepFunction"}) {
			period, _ := strconv.Atoi(get(p, "Period").Value)
			evals, _ := strconv.Atoi(get(p, "EvaluationPeriods").Value)
			stopped = get(p, "ComparisonOperator").Value == "LessThanThreshold" && get(p, "Threshold").Value == "1" &&
				get(p, "TreatMissingData").Value == "breaching" && period*evals > 60
		}
	}
	if !stopped {
		t.Error("no alarm fires when the sweep stops running")
	}
	for _, a := range as {
		if got := intrinsic(get(a.props, "AlarmActions")); got != "!If HasAlarmTopic [!Ref AlarmTopic] !Ref AWS::NoValue" {
			t.Errorf("%s AlarmActions %s, want the alarm topic when one is given", a.id, got)
		}
		// Metric math: the expression sums exactly the alarm's metrics.
		if ms := get(a.props, "Metrics"); ms != nil {
			var ids, returned []string
			expr := ""
			for _, q := range ms.Content {
				if e := get(q, "Expression"); e != nil {
					expr = e.Value
					continue
				}
				ids = append(ids, get(q, "Id").Value)
				if r := get(q, "ReturnData"); r == nil || r.Value != "false" {
					returned = append(returned, get(q, "Id").Value)
				}
			}
			terms := strings.Split(strings.ReplaceAll(expr, " ", ""), "+")
			if slices.Sort(terms); !slices.Equal(terms, slices.Sorted(slices.Values(ids))) || len(returned) != 0 {
				t.Errorf("%s: expression %q over %v (returned %v)", a.id, expr, ids, returned)
			}
		}
	}
}

// taskstate polls the retry queue and sends to it: an SQS -> Lambda -> SQS
// loop by design, which Lambda stops after about 16 hops unless the
// function allows it. Every function sends to the retry queue
// (boot.Setup gives each a requeuer); only one polled by it loops.
func TestRecursiveLoopAllowedWhereTetherLoops(t *testing.T) {
	tp := loadTemplate(t)
	boot, err := os.ReadFile("boot/boot.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(boot), "dispatch.NewSQSRequeuer(") {
		t.Fatal("boot.Setup no longer makes the retry queue's requeuer: revisit who loops")
	}
	polled := consumedQueues(t, tp)
	for _, fn := range tp.resources("AWS::Serverless::Function") {
		want := "Terminate"
		if polled["RetryQueue"] == fn || polled["HostsQueue"] == fn { // the hosts function sends its own next passes
			want = "Allow"
		}
		if got := get(tp.resource(t, fn), "Properties", "RecursiveLoop"); got == nil || got.Value != want {
			t.Errorf("%s RecursiveLoop %v, want %s", fn, got, want)
		}
	}
	if polled["RetryQueue"] != "TaskStateFunction" {
		t.Errorf("the retry queue is polled by %q", polled["RetryQueue"])
	}
}

// subVariables lists the ${...} of a Fn::Sub text (not ${!Literal}).
var subVariables = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// checkSubVariables: every ${X} or ${X.Attr} of text names a parameter, a
// pseudo parameter or a resource of the template.
func checkSubVariables(t *testing.T, tp template, what, text string) {
	t.Helper()
	for _, m := range subVariables.FindAllStringSubmatch(text, -1) {
		name, _, _ := strings.Cut(m[1], ".")
		if !strings.HasPrefix(name, "AWS::") && get(tp.root, "Parameters", name) == nil && get(tp.root, "Resources", name) == nil {
			t.Errorf("%s: ${%s} names nothing in the template", what, m[1])
		}
	}
}

// The dashboard: handoffs p50/p99, steps waiting and for how long,
// throttles, force detaches, dead letters.
func TestDashboard(t *testing.T) {
	tp := loadTemplate(t)
	body := get(tp.resource(t, "Dashboard"), "Properties", "DashboardBody")
	if body == nil || body.Tag != "!Sub" {
		t.Fatalf("DashboardBody %v, want a !Sub JSON text", body)
	}
	checkSubVariables(t, tp, "DashboardBody", body.Value)
	text := subVariables.ReplaceAllStringFunc(body.Value, func(m string) string { return strings.Trim(m, "${}") })
	var dash struct {
		Widgets []struct {
			Type       string
			Properties struct {
				Title   string
				Region  string
				Stat    string
				Metrics [][]any
			}
		}
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := json.Unmarshal([]byte(text), &dash); err != nil {
		t.Fatalf("DashboardBody is not JSON: %v", err)
	}
	// Each metric line, "..." expanded, as "namespace name dimension=value stat".
	var lines []string
	for _, w := range dash.Widgets {
		if w.Properties.Region != "AWS::Region" {
			t.Errorf("widget %q: region %q, want ${AWS::Region}", w.Properties.Title, w.Properties.Region)
		}
		var prev []any
		for _, m := range w.Properties.Metrics {
			if len(m) > 0 && m[0] == "..." {
				m = append(slices.Clone(prev[:len(prev)-1]), m[1:]...)
			}
			prev = m
			var words []string
			stat := w.Properties.Stat
			for _, v := range m {
				switch x := v.(type) {
				case string:
					words = append(words, x)
				case map[string]any:
					if s, ok := x["stat"].(string); ok {
						stat = s
					}
				}
			}
			if len(words) != 4 {
				t.Errorf("widget %q: metric %v is not namespace, name and one dimension", w.Properties.Title, m)
				continue
			}
			lines = append(lines, words[0]+" "+words[1]+" "+words[2]+"="+words[3]+" "+stat)
		}
	}
	emitted := emittedMetrics(t)
	for _, l := range lines {
		f := strings.Fields(l)
		if f[0] == "Tether" && (!slices.Contains(emitted, f[1]) || f[2] != "Cluster=ClusterName") {
			t.Errorf("dashboard metric %q: the reconciler does not emit it with dimension Cluster", l)
		}
	}
	for _, want := range []string{
		"Tether HandoffDuration Cluster=ClusterName p50",
		"Tether HandoffDuration Cluster=ClusterName p99",
		"AWS/SQS ApproximateNumberOfMessagesDelayed QueueName=RetryQueue.QueueName Maximum",
		"AWS/SQS ApproximateAgeOfOldestMessage QueueName=RetryQueue.QueueName Maximum",
		"Tether Retries Cluster=ClusterName Sum",
		"Tether Throttles Cluster=ClusterName Sum",
		"AWS/Lambda Throttles FunctionName=TaskStateFunction Sum",
		"Tether ForceDetaches Cluster=ClusterName Sum",
		"AWS/SQS ApproximateNumberOfMessagesVisible QueueName=TaskDeadLetterQueue.QueueName Maximum",
		"AWS/SQS ApproximateNumberOfMessagesVisible QueueName=InstanceDeadLetterQueue.QueueName Maximum",
		"AWS/SQS ApproximateNumberOfMessagesVisible QueueName=VolumeDeadLetterQueue.QueueName Maximum",
		"AWS/SQS ApproximateNumberOfMessagesVisible QueueName=RetryDeadLetterQueue.QueueName Maximum",
		"AWS/SQS ApproximateNumberOfMessagesVisible QueueName=RuleDeadLetterQueue.QueueName Maximum",
		"AWS/SQS ApproximateNumberOfMessagesVisible QueueName=HostsDeadLetterQueue.QueueName Maximum",
		"AWS/SQS ApproximateAgeOfOldestMessage QueueName=HostsQueue.QueueName Maximum",
		"Tether HoldDuration Cluster=ClusterName p99",
		"Tether HoldsTimedOut Cluster=ClusterName Sum",
		"Tether HungHostsStopped Cluster=ClusterName Sum",
		"Tether HungHostsFenced Cluster=ClusterName Sum",
		"Tether DeadHostHandoffs Cluster=ClusterName Sum",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("dashboard lacks %q; it has:\n%s", want, strings.Join(lines, "\n"))
		}
	}
}

// Outputs: the dashboard's URL, every queue's URL, the roles' ARNs, the
// documents', functions' and log groups' names.
func TestOutputs(t *testing.T) {
	tp := loadTemplate(t)
	outputs := get(tp.root, "Outputs")
	values := map[string]string{}
	for _, name := range keys(outputs) {
		v := get(outputs, name, "Value")
		values[name] = intrinsic(v)
		if d := get(outputs, name, "Description"); d == nil || d.Value == "" {
			t.Errorf("output %s has no description", name)
		}
		if v.Tag == "!Sub" {
			checkSubVariables(t, tp, "output "+name, v.Value)
		}
	}
	want := map[string]string{
		"DashboardUrl": "!Sub https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}#dashboards:name=${Dashboard}",
	}
	for _, q := range tp.resources("AWS::SQS::Queue") {
		want[q+"Url"] = "!Ref " + q
	}
	for _, d := range []string{"MountDocument", "UnmountDocument", "StatusDocument"} {
		want[d+"Name"] = "!Ref " + d
	}
	for fn, role := range roleOf {
		want[fn+"Name"] = "!Ref " + fn
		want[role+"Arn"] = "!GetAtt " + role + ".Arn"
		want[logGroupOf[fn]+"Name"] = "!Ref " + logGroupOf[fn]
	}
	if len(values) != len(want) {
		t.Errorf("outputs %v, want %v", keys(outputs), want)
	}
	for k, v := range want {
		if values[k] != v {
			t.Errorf("output %s = %q, want %q", k, values[k], v)
		}
	}
}
