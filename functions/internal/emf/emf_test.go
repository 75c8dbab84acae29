package emf

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestEmitWritesOneEMFLine(t *testing.T) {
	var buf bytes.Buffer
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	w := New(&buf, "Tether", func() time.Time { return at })
	if err := w.Emit(map[string]string{"Cluster": "prod"}, map[string]any{"volume": "rexray-vol"},
		Metric{Name: "HandoffDuration", Value: 1234, Unit: Milliseconds}, Metric{Name: "Retries", Value: 2, Unit: Count}); err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("want one line, got %d: %s", len(lines), buf.String())
	}
	var got struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Cluster         string
		Volume          string `json:"volume"`
		HandoffDuration float64
		Retries         float64
	}
	if err := json.Unmarshal(lines[0], &got); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	if got.AWS.Timestamp != at.UnixMilli() || len(got.AWS.CloudWatchMetrics) != 1 {
		t.Fatalf("bad _aws: %+v", got.AWS)
	}
	d := got.AWS.CloudWatchMetrics[0]
	if d.Namespace != "Tether" || len(d.Dimensions) != 1 || len(d.Dimensions[0]) != 1 || d.Dimensions[0][0] != "Cluster" {
		t.Fatalf("bad directive: %+v", d)
	}
	if len(d.Metrics) != 2 || d.Metrics[0].Name != "HandoffDuration" || d.Metrics[0].Unit != "Milliseconds" {
		t.Fatalf("bad metric definitions: %+v", d.Metrics)
	}
	if got.Cluster != "prod" || got.Volume != "rexray-vol" || got.HandoffDuration != 1234 || got.Retries != 2 {
		t.Fatalf("bad values: %+v", got)
	}
}

func TestEmitWithoutMetricsWritesNothing(t *testing.T) {
	var buf bytes.Buffer
	if err := New(&buf, "Tether", nil).Emit(nil, nil); err != nil || buf.Len() != 0 {
		t.Fatalf("err=%v out=%q", err, buf.String())
	}
	var nilWriter *Writer
	if err := nilWriter.Emit(nil, nil, Metric{Name: "X", Value: 1}); err != nil {
		t.Fatal(err)
	}
}
