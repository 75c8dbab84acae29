package cloudtest

import "sync"

// Hold stops one call on its way into the fake AWS, before it has any
// effect, until the test releases it: a pass that read the world, decided,
// and takes its step only after the world moved on (a Lambda slowed by
// throttling, a sweep that ran for a minute).
type Hold struct {
	reached chan struct{} // closed when the call arrives
	release chan struct{} // closed by Release
	once    sync.Once
}

// HoldNext holds the next call of op ("EC2:AttachVolume",
// "SSM:SendCommand"); for SendCommand and ListCommands, document narrows
// it to one document ("" for any). The calls that can be held: CreateVolume,
// AttachVolume, DetachVolume, DeleteVolume, CreateTags, DescribeInstances,
// SendCommand, ListCommands, StopTask.
func (w *World) HoldNext(op, document string) *Hold {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := &Hold{reached: make(chan struct{}), release: make(chan struct{})}
	w.holds[holdKey(op, document)] = h
	return h
}

// Reached is closed once the held call has arrived.
func (h *Hold) Reached() <-chan struct{} { return h.reached }

// Release lets the held call (or, if it has not come yet, the next one) go on.
func (h *Hold) Release() { h.once.Do(func() { close(h.release) }) }

func holdKey(op, document string) string {
	if document == "" {
		return op
	}
	return op + "/" + document
}

// wait blocks a call that a Hold waits for. It is called before the call
// takes w.mu, so the rest of the world goes on meanwhile.
func (w *World) wait(op, document string) {
	w.mu.Lock()
	h := w.holds[holdKey(op, document)]
	if h == nil && document != "" {
		h = w.holds[op]
		document = ""
	}
	if h != nil {
		delete(w.holds, holdKey(op, document))
	}
	w.mu.Unlock()
	if h == nil {
		return
	}
	close(h.reached)
	<-h.release
}
