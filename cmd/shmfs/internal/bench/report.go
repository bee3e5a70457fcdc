// Package bench is `shmfs bench`: it measures shmfs between processes beside
// what a user would use instead (a Unix stream socket, a pipe, TCP over
// loopback, NATS over loopback) and beside the floors of the machine (a
// futex wake-up between two processes, memmove), all in one run, and renders
// the results as a table, JSON, Markdown and charts.
//
// The measuring process is the sender; every receiver is a child process,
// a re-executed copy of the binary (ChildMain). The heavy dependencies
// (nats-server, gonum/plot, progressbar) live here and in cmd/shmfs, never
// in core.
package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// ReportVersion is the version of the JSON layout of Report.
const ReportVersion = 1

// Report is the result of one run.
type Report struct {
	Version  int       `json:"version"`
	Machine  Machine   `json:"machine"`
	Quick    bool      `json:"quick"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"` // wall time of the run
	Sizes    []int     `json:"sizes"`
	FanOut   int       `json:"fanout_size"` // message size of the fan-out suite
	Futex    Futex     `json:"futex"`
	Latency  []Series  `json:"latency"`
	Through  []Series  `json:"throughput"`
	FanOuts  []Series  `json:"fanout"`
	Failures []string  `json:"failures,omitempty"` // points that failed, one line each
}

// Machine says where a report was measured.
type Machine struct {
	CPU     string  `json:"cpu"`
	Cores   int     `json:"cores"`
	Kernel  string  `json:"kernel"`
	Go      string  `json:"go"`
	Load    float64 `json:"load1"` // 1-minute load average at the start
	MemoryG float64 `json:"memory_gib"`
}

// Futex is the floor of event-driven delivery between two processes: a
// futex wake-up there and back through core/event, halved (one way). It
// does not depend on the message size.
type Futex struct {
	Count int     `json:"count"`
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
	Error string  `json:"error,omitempty"`
}

// Series is one transport's points in one suite.
type Series struct {
	ID    string `json:"id"`
	Label string `json:"label"`
	// Group is "shmfs", "alternative" or "floor".
	Group string `json:"group"`
	// Lossless (throughput): the transport delivers every message; false
	// for fire-and-forget, whose rate is what the receiver got.
	Lossless bool    `json:"lossless"`
	Note     string  `json:"note,omitempty"`
	Points   []Point `json:"points"`
}

// Point is one measurement. Latency points fill P50us/P99us; throughput
// points MsgsPerSec/MBPerSec/ReceivedPct; fan-out points also Subscribers
// and CPUNsPerMsg.
type Point struct {
	Size        int     `json:"size"`
	Subscribers int     `json:"subscribers,omitempty"`
	Count       int     `json:"count"`
	P50us       float64 `json:"p50_us,omitempty"`
	P99us       float64 `json:"p99_us,omitempty"`
	MsgsPerSec  float64 `json:"msgs_per_s,omitempty"`
	MBPerSec    float64 `json:"mb_per_s,omitempty"` // 10^6 bytes per second received by one receiver
	ReceivedPct float64 `json:"received_pct,omitempty"`
	CPUNsPerMsg float64 `json:"cpu_ns_per_msg,omitempty"` // sending process, per message (fan-out)
	Error       string  `json:"error,omitempty"`
}

// OK reports whether the point was measured.
func (p Point) OK() bool { return p.Error == "" && p.Count > 0 }

// Find returns the series with id, or nil.
func Find(ss []Series, id string) *Series {
	for i := range ss {
		if ss[i].ID == id {
			return &ss[i]
		}
	}
	return nil
}

// At returns the measured point of size (and subscribers, for fan-out;
// 0 otherwise).
func (s *Series) At(size, subscribers int) (Point, bool) {
	if s == nil {
		return Point{}, false
	}
	for _, p := range s.Points {
		if p.Size == size && p.Subscribers == subscribers && p.OK() {
			return p, true
		}
	}
	return Point{}, false
}

// ErrReport: a JSON file is not a report of this version.
var ErrReport = errors.New("bench: not a shmfs bench report")

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrReport, path, err)
	}
	if r.Version != ReportVersion {
		return nil, fmt.Errorf("%w: %s has version %d, want %d", ErrReport, path, r.Version, ReportVersion)
	}
	return &r, nil
}
