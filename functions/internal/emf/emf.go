// Package emf writes CloudWatch Embedded Metric Format lines: one JSON
// object per line on stdout, whose "_aws" member tells CloudWatch Logs
// which fields are metrics. Lambda forwards stdout to CloudWatch Logs, which
// turns these lines into metrics without any API call from the function.
package emf

import (
	"encoding/json"
	"io"
	"sort"
	"sync"
	"time"
)

// Unit is a CloudWatch metric unit.
type Unit string

// Units tether uses.
const (
	Milliseconds Unit = "Milliseconds"
	Count        Unit = "Count"
)

// Metric is one value.
type Metric struct {
	Name  string
	Value float64
	Unit  Unit
}

// Writer emits EMF lines to w (Lambda: os.Stdout). Safe for concurrent use.
type Writer struct {
	mu        sync.Mutex
	w         io.Writer
	namespace string
	now       func() time.Time
}

// New returns a Writer for namespace; now may be nil (time.Now).
func New(w io.Writer, namespace string, now func() time.Time) *Writer {
	if now == nil {
		now = time.Now
	}
	return &Writer{w: w, namespace: namespace, now: now}
}

type metricDef struct {
	Name string `json:"Name"`
	Unit Unit   `json:"Unit,omitempty"`
}

type directive struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []metricDef `json:"Metrics"`
}

type metadata struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

// Emit writes one line with the metrics, the dimensions (all of them form
// one dimension set) and extra properties (searchable in Logs Insights,
// not metrics). Names in dims and props must not clash with metric names.
func (e *Writer) Emit(dims map[string]string, props map[string]any, metrics ...Metric) error {
	if e == nil || len(metrics) == 0 {
		return nil
	}
	line := make(map[string]any, len(dims)+len(props)+len(metrics)+1)
	for k, v := range props {
		line[k] = v
	}
	dimNames := make([]string, 0, len(dims))
	for k, v := range dims {
		dimNames = append(dimNames, k)
		line[k] = v
	}
	sort.Strings(dimNames)
	defs := make([]metricDef, 0, len(metrics))
	for _, m := range metrics {
		defs = append(defs, metricDef{Name: m.Name, Unit: m.Unit})
		line[m.Name] = m.Value
	}
	line["_aws"] = metadata{
		Timestamp:         e.now().UnixMilli(),
		CloudWatchMetrics: []directive{{Namespace: e.namespace, Dimensions: [][]string{dimNames}, Metrics: defs}},
	}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err = e.w.Write(append(b, '\n'))
	return err
}
