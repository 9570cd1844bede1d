package main

import (
	"strings"
	"testing"
)

func TestCell(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a | b", `a \| b`},
		{"line one\n  line two", "line one line two"},
		{strings.Repeat("x", 400), strings.Repeat("x", 300) + "…"},
	}
	for _, tc := range tests {
		if got := cell(tc.in); got != tc.want {
			t.Errorf("cell(%.20q) = %.40q, want %.40q", tc.in, got, tc.want)
		}
	}
}

func TestStatuses(t *testing.T) {
	if got := statuses(map[int]int{503: 2, 200: 5}); got != "200×5, 503×2" {
		t.Errorf("statuses = %q", got)
	}
}

// TestRender checks that failures, known gaps and test runs without
// results all show up, and that a failure makes the whole run fail.
func TestRender(t *testing.T) {
	tests := []testRun{
		{pkg: "./a", pattern: "X", pass: true, rows: []Row{
			{Scenario: "good", Sent: "s", Got: "g", Pass: true},
			{Scenario: "gap", Sent: "s", Got: "NaN", KnownGap: true},
			{Scenario: "hostile input: big", Sent: "png", Limit: "256 MiB", Got: "413", Resources: "peak RSS 9 MiB", Pass: true},
		}},
	}
	doc, ok := render(tests, nil, nil, options{}, 0)
	if !ok {
		t.Error("all rows passed (a known gap does not count) but render reported failure")
	}
	for _, want := range []string{"| good | s | g |", "## Known gaps", "| gap | s | NaN |", "## Hostile inputs", "| big: png | 256 MiB | 413 | peak RSS 9 MiB |"} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}
	tests[0].rows[0].Pass = false
	if doc, ok := render(tests, nil, nil, options{}, 0); ok || !strings.Contains(doc, "**FAIL**") {
		t.Errorf("a failed row: ok=%v, document:\n%s", ok, doc)
	}
	empty := []testRun{{pkg: "./b", pattern: "Y", pass: false, tail: "panic: boom"}}
	if doc, ok := render(empty, nil, nil, options{}, 0); ok || !strings.Contains(doc, "panic: boom") {
		t.Errorf("a test run without rows: ok=%v, document:\n%s", ok, doc)
	}
	ol := &overloadReport{OfferedRPS: 500, CapacityRPS: 100, DurationS: 30, Pass: false}
	if _, ok := render(nil, ol, nil, options{}, 0); ok {
		t.Error("a failed overload run did not fail the document")
	}
}
