package main

import (
	"testing"
	"time"
)

func TestBenchTarget(t *testing.T) {
	row := func(backend, path string, conc int, rate float64, p99 time.Duration) benchRow {
		return benchRow{backend: backend, path: path, conc: conc, rate: rate, p99: p99}
	}
	tests := []struct {
		name string
		rows []benchRow
		want string
	}{
		{"missed", []benchRow{
			row("postgres", "bare", 16, 7000, 5*time.Millisecond), row("postgres", "sqlgate", 16, 2000, 18*time.Millisecond),
			row("postgres", "bare", 64, 8000, 15*time.Millisecond), row("postgres", "sqlgate", 64, 3000, 49*time.Millisecond),
		}, "target (PostgreSQL, concurrency 64): ratio >= 0.70: 0.38, MISSED; added p99 < 2000µs: 34.0ms, MISSED"},
		{"met", []benchRow{
			row("postgres", "bare", 64, 8000, 15*time.Millisecond), row("postgres", "sqlgate", 64, 7200, 16*time.Millisecond),
		}, "target (PostgreSQL, concurrency 64): ratio >= 0.70: 0.90, met; added p99 < 2000µs: 1000µs, met"},
		{"sqlite_only", []benchRow{
			row("sqlite", "bare", 64, 3000, 40*time.Millisecond), row("sqlite", "sqlgate", 64, 1500, 90*time.Millisecond),
		}, ""},
		{"one_path", []benchRow{
			row("postgres", "bare", 64, 0, 0), row("postgres", "sqlgate", 64, 3000, 49*time.Millisecond),
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := benchTarget(tc.rows); got != tc.want {
				t.Errorf("benchTarget = %q\nwant          %q", got, tc.want)
			}
		})
	}
}
