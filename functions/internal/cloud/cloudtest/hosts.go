package cloudtest

// HangInstance makes the instance hang as a host whose kernel locked up:
// EC2 still says running, its ECS agent is disconnected (ECS keeps its
// tasks as they were, RUNNING, and places nothing new there) and its SSM
// agent does not answer; the guest keeps what it had mounted. One
// Container Instance State Change (agentConnected false) is sent.
func (w *World) HangInstance(instance string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	inst := w.instances[instance]
	inst.SSMDown = true
	ci := w.cis[inst.CI]
	ci.AgentConnected = false
	w.events = append(w.events, Event{Kind: "instance", Instance: ci.ARN, EC2ID: instance, Status: ci.Status})
}
