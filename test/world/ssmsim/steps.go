package ssmsim

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// What SSM Agent does with each step of a document on a node, read from its
// source (aws/amazon-ssm-agent: agent/framework/runpluginutil
// runpluginutil.go RunPlugins, getStepExecutionOperation,
// getShouldPluginSkipBasedOnControlFlow; agent/contracts aggregator.go;
// agent/plugins/pluginutil GetStatus):
//   - the steps run one after another, in the document's order, whatever
//     the one before ended in: a failed step fails the invocation but does
//     not stop the next ones, unless a control-flow input says so
//     (onFailure: exit, onSuccess: exit) or a step exits 168 or 169;
//   - a step is skipped, not run, when its plugin cannot run on the node
//     or its precondition does not hold; a skipped step counts as a
//     success, with code 0 and the reason as its output;
//   - the invocation is Failed if any step failed, else TimedOut if any
//     timed out, else Success;
//   - each step's result is sent to SSM when the step ends; the
//     invocation's own status follows the last one.

// pluginResult is one step's result on one node: a CommandPlugin, and
// GetCommandInvocation's answer for its PluginName.
type pluginResult struct {
	name            string
	status, details string
	code            int
	started, ended  time.Time
	stdout, stderr  string
	output          string // CommandPlugin.Output
	ran             bool   // the script ran on the host (not skipped or failed before it)
	script          string // what the host ran
	env             map[string]string
	// reported: the agent has sent this result to SSM, which only then
	// knows the plugin. A name SSM does not know yet is InvalidPluginName
	// ("get-command-invocation commonly throws ... InvalidPluginName. The
	// actual meaning? This invocation hasn't become available":
	// grapl-security/grapl#902, for a PluginName of the document).
	reported bool
}

// stepOp is what the agent does with a step.
type stepOp int

const (
	opRun stepOp = iota
	opSkip
)

// The agent's exit codes with a meaning (amazon-ssm-agent appconfig, Linux
// and macOS): 168 and 169 end the document (success, failure), 194 asks
// for a reboot, 137 (128+SIGKILL) is a step the agent killed at its
// execution timeout (or any script that died of SIGKILL), reported
// TimedOut.
const (
	exitWithSuccess    = 168
	exitWithFailure    = 169
	exitReboot         = 194
	exitStoppedByAgent = 137
)

// handles reports whether the agent on a node of the platform has a plugin
// for the action: aws:runShellScript is registered only on Linux and macOS
// (plugin_unix.go); aws:runPowerShellScript everywhere.
func handles(platform, action string) bool {
	return slices.Contains(actionPlatforms[action], platform)
}

// stepOperation decides whether step i runs on a node of the platform,
// given the results of the steps before it, and why not.
func stepOperation(steps []docStep, i int, done []*pluginResult, platform string) (stepOp, string) {
	st := steps[i]
	if priorExit(steps, i, done) {
		return opSkip, fmt.Sprintf("Plugin with name %s and id %s skipped due to prior step with an exit condition", st.action, st.name)
	}
	if !handles(platform, st.action) {
		return opSkip, fmt.Sprintf("Step execution skipped due to unsupported plugin: %s. Step name: %s", st.action, st.name)
	}
	// The agent compares platformType without case ("linux" on Linux).
	if st.precondition != nil && !strings.EqualFold(st.precondition.platform, platform) {
		return opSkip, fmt.Sprintf("Step execution skipped due to unsatisfied preconditions: '%s'. Step name: %s", st.precondition, st.name)
	}
	return opRun, ""
}

// priorExit: a step before i ended the document (exit code 168 or 169, a
// failure with onFailure exit, a success with onSuccess exit). The last
// step runs anyway when it is a finallyStep.
func priorExit(steps []docStep, i int, done []*pluginResult) bool {
	if steps[i].finally && i == len(steps)-1 {
		return false
	}
	for j := range i {
		r := done[j]
		if r == nil {
			continue
		}
		if r.code == exitWithSuccess || r.code == exitWithFailure ||
			(r.status == "Failed" && steps[j].onFailure == modifierExit) ||
			(r.status == "Success" && steps[j].onSuccess == modifierExit) {
			return true
		}
	}
	return false
}

// skipped is a skipped step's result: "Skipped is a form of success"
// (aggregator.go); Run Command's statuses have no Skipped
// (CommandPluginStatus), so it shows Success, code 0, with the reason as
// the plugin's Output and no standard output.
func skipped(name, reason string, at time.Time) *pluginResult {
	return &pluginResult{name: name, status: "Success", details: "Success", code: 0, output: reason, started: at, ended: at}
}

// applyExitRules sets a step's status from its exit code and control-flow
// inputs, as RunPlugins does after running it.
func applyExitRules(st docStep, r *pluginResult) {
	switch r.code {
	case 0:
		r.status, r.details = "Success", "Success"
	case exitStoppedByAgent:
		r.status, r.details = "TimedOut", detailExecutionTimedOut
	case exitReboot:
		// The agent would reboot the node and carry on; this world does
		// not, and says so rather than pretend.
		r.status, r.details = "Failed", "Failed"
		r.stderr += "\nssmsim: exit code 194 asks SSM Agent to reboot the node, which this world does not model"
	default:
		r.status, r.details = "Failed", "Failed"
	}
	switch {
	case r.code == exitWithSuccess:
		r.status, r.details, r.stderr = "Success", "Success", ""
		r.stdout += "\nStep exited with code 168. Therefore, marking step as succeeded. Further document steps will be skipped."
	case r.code == exitWithFailure:
		const note = "\nStep exited with code 169. Therefore, marking step as Failed. Further document steps will be skipped."
		r.stdout, r.stderr = r.stdout+note, r.stderr+note
	case r.status == "Failed" && st.onFailure != "":
		const note = "\nStep was found to have onFailure property. Further document steps will be skipped."
		r.stdout, r.stderr = r.stdout+note, r.stderr+note
		if st.onFailure == modifierSuccessAndExit {
			r.status, r.details, r.code = "Success", "Success", exitWithSuccess
		}
	}
	r.output = pluginOutput(r.stdout, r.stderr)
}

// aggregate is the invocation's status from its steps' (all ended):
// "Failed > TimedOut > Cancelled > Success" (aggregator.go
// DocumentResultAggregator); "For a command invocation, [Failed] indicates
// that the result code for one or more plugins wasn't zero"
// (CommandInvocation.StatusDetails, SSM API reference).
func aggregate(results []*pluginResult) (status, details string) {
	status, details = "Success", "Success"
	for _, r := range results {
		switch {
		case r == nil:
		case r.status == "Failed":
			return "Failed", "Failed"
		case r.status == "TimedOut":
			status, details = "TimedOut", detailExecutionTimedOut
		}
	}
	return status, details
}
