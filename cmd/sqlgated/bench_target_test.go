package main

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func TestBenchTarget(t *testing.T) {
	row := func(backend, path string, conc int, rate float64, p99 time.Duration) benchRow {
		return benchRow{backend: backend, path: path, conc: conc, rate: rate, p99: p99}
	}
	tests := []struct {
		name string
		rows []benchRow
		want []string
	}{
		{"missed", []benchRow{
			row("postgres", "bare", 16, 7000, 5*time.Millisecond), row("postgres", "sqlgate", 16, 2000, 18*time.Millisecond),
			row("postgres", "bare", 64, 8000, 15*time.Millisecond), row("postgres", "sqlgate", 64, 3000, 49*time.Millisecond),
		}, []string{"target (PostgreSQL, concurrency 64, sqlgate): ratio >= 0.70: 0.38, MISSED; added p99 < 2000µs: 34.0ms, MISSED"}},
		{"met", []benchRow{
			row("postgres", "bare", 64, 8000, 15*time.Millisecond), row("postgres", "sqlgate", 64, 7200, 16*time.Millisecond),
		}, []string{"target (PostgreSQL, concurrency 64, sqlgate): ratio >= 0.70: 0.90, met; added p99 < 2000µs: 1000µs, met"}},
		{"both_paths", []benchRow{
			row("postgres", "bare", 64, 8000, 15*time.Millisecond), row("postgres", "sqlgate", 64, 3000, 49*time.Millisecond),
			row("postgres", "sqlgate+batch", 64, 5600, 25*time.Millisecond),
		}, []string{
			"target (PostgreSQL, concurrency 64, sqlgate): ratio >= 0.70: 0.38, MISSED; added p99 < 2000µs: 34.0ms, MISSED",
			"target (PostgreSQL, concurrency 64, sqlgate+batch): ratio >= 0.70: 0.70, met; added p99 < 2000µs: 10.0ms, MISSED",
		}},
		{"sqlite_only", []benchRow{
			row("sqlite", "bare", 64, 3000, 40*time.Millisecond), row("sqlite", "sqlgate", 64, 1500, 90*time.Millisecond),
		}, nil},
		{"one_path", []benchRow{
			row("postgres", "bare", 64, 0, 0), row("postgres", "sqlgate", 64, 3000, 49*time.Millisecond),
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := benchTarget(tc.rows); !slices.Equal(got, tc.want) {
				t.Errorf("benchTarget = %q\nwant          %q", got, tc.want)
			}
		})
	}
}

// TestLoadOpen checks the open-loop load's accounting: it sends exactly
// rate × duration requests whatever the responder's pace, and counts each
// reply as a success or an error.
func TestLoadOpen(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// Requests with an odd number fail, as a refused call would.
	sub, err := nc.Subscribe("bench.orders.create", func(m *nats.Msg) {
		key := m.Header.Get("Idempotency-Key")
		n, _ := strconv.Atoi(key[strings.LastIndexByte(key, '-')+1:])
		if n%2 == 1 {
			_ = m.Respond([]byte(`{"ok":false,"error":{"code":"forbidden"}}`))
			return
		}
		_ = m.Respond([]byte(`{"ok":true,"result":{}}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	do := func(_ int, n int64) error {
		_, err := benchRequest(nc, benchSubject, "open", n)
		return err
	}
	lat, errs, err := loadOpen(t.Context(), 200, 4, 100*time.Millisecond, "open", do)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 10 || errs.n != 10 || errs.first == nil || !strings.Contains(errs.first.Error(), "forbidden") {
		t.Errorf("200 req/s for 100ms: %d successes and %d errors (first %v), want 10 and 10, the first naming the reply's code", len(lat), errs.n, errs.first)
	}

	// A cell in which every request fails is an error that names the reply.
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("bench.orders.create", func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"ok":false,"error":{"code":"forbidden"}}`))
	}); err != nil {
		t.Fatal(err)
	}
	_, _, err = loadOpen(t.Context(), 100, 4, 20*time.Millisecond, "refused", do)
	if err == nil || !strings.Contains(err.Error(), "refused: every request failed") {
		t.Errorf("all failed: err = %v", err)
	}
}

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "0"}, "--rate: requests per second from 1 to 1000000"},
		{[]string{"--rate", "500,fast"}, "--rate: requests per second from 1 to 1000000"},
		{[]string{"--concurrency", "0"}, "--concurrency: positive integers"},
		{[]string{"--concurrency", ""}, "nothing to measure: give --concurrency, --rate or --durable"},
		{[]string{"--durable", "1,x"}, "--durable: positive integers"},
		{[]string{"--durable", "4", "--batch", "0"}, "--batch and --sync-batch: 1 to 256"},
		{[]string{"--sync-batch", "300"}, "--batch and --sync-batch: 1 to 256"},
		{[]string{"--paths", "bare,fast"}, "--paths: bare, sqlgate, sqlgate+batch"},
	} {
		var out, errOut strings.Builder
		err := runBench(t.Context(), tc.args, &out, &errOut)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %q: err = %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
}

// TestBenchInterrupted checks that a bench stopped by a signal (its context
// ends) prints no table, whether it stops at once, during the setup once
// the daemon runs (the setup undoes itself: this panicked once) or during a
// cell: the cells cut short would show wrong ratios.
func TestBenchInterrupted(t *testing.T) {
	for _, when := range []string{"at once", "once the daemon started", "during a cell"} {
		ctx, cancel := context.WithCancel(t.Context())
		switch when {
		case "at once":
			cancel()
		case "once the daemon started":
			onBenchStarted = cancel
		default:
			time.AfterFunc(2*time.Second, cancel) // the setup takes 0.2 s (0.6 s with -race)
		}
		var out, errOut strings.Builder
		args := []string{"--backends", "sqlite", "--concurrency", "4", "--duration", "3s", "--rounds", "2"}
		err := runBench(ctx, args, &out, &errOut)
		onBenchStarted = nil
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "bench interrupted") {
			t.Errorf("stopped %s: err = %v, want the interruption", when, err)
		}
		if strings.Contains(out.String(), "req/s") || strings.Contains(out.String(), "target") {
			t.Errorf("stopped %s: an interrupted bench printed figures:\n%s", when, out.String())
		}
		cancel()
	}
}

// TestPrintBenchTable checks that open-loop and durable rows get their own
// tables and do not count for the target, which is measured closed loop on
// the request path.
func TestPrintBenchTable(t *testing.T) {
	rows := []benchRow{
		{backend: "postgres", path: "bare", conc: 64, rate: 8000, p99: 15 * time.Millisecond},
		{backend: "postgres", path: "sqlgate", conc: 64, rate: 3000, p99: 49 * time.Millisecond, reqs: 600, txs: 600},
		{backend: "postgres", path: "sqlgate+batch", conc: 64, rate: 5000, p99: 30 * time.Millisecond, reqs: 1000, txs: 250},
		{backend: "postgres", path: "bare", offered: 500, rate: 500, p50: time.Millisecond, p99: 2 * time.Millisecond},
		{backend: "postgres", path: "sqlgate", offered: 500, rate: 500, p50: 1700 * time.Microsecond, p99: 3500 * time.Microsecond},
		{backend: "postgres", path: "bare", conc: 64, durable: true, rate: 4000, p99: 30 * time.Millisecond, errors: 64, firstErr: errors.New("answer: context deadline exceeded")},
		{backend: "postgres", path: "sqlgate", conc: 64, durable: true, rate: 3000, p99: 31 * time.Millisecond},
	}
	var out strings.Builder
	printBenchTable(&out, rows)
	got := out.String()
	for _, want := range []string{
		"request path: NATS request -> SQL insert -> reply (closed loop",
		"request path at an offered rate (open loop, at most 64 in flight",
		"postgres            500  sqlgate    500  1700µs  3500µs",
		"durable path: JetStream publish -> consumer -> SQL insert -> answer",
		"  3000  0µs  31.0ms      0µs         0µs       0         0.75        0µs     1000µs",
		"postgres    64  sqlgate+batch   5000  0µs  30.0ms      0µs         0µs       0         0.62        0µs     15.0ms",
		"calls per SQL transaction (request path, from the replies' transaction ids): postgres sqlgate c=64 1.00; postgres sqlgate+batch c=64 4.00",
		"target (PostgreSQL, concurrency 64, sqlgate): ratio >= 0.70: 0.38, MISSED; added p99 < 2000µs: 34.0ms, MISSED",
		"failed requests (the first error of each row):\n  postgres bare durable path c=64: 64 failed; first: answer: context deadline exceeded\n",
		"target (PostgreSQL, concurrency 64, sqlgate+batch): ratio >= 0.70: 0.62, MISSED; added p99 < 2000µs: 15.0ms, MISSED",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// TestBenchSQLite runs `sqlgated bench` briefly on SQLite, every load shape
// on both paths, and checks that every row answered requests without an
// error: the bench assembles the real daemon, the bare responder and the
// bare JetStream consumer, and drives the sync and the durable routes.
func TestBenchSQLite(t *testing.T) {
	// Not parallel: it sets the bench's policy bound, which the race
	// detector on a loaded host can exceed at 100 ms (a request failed
	// closed with "the policy did not decide in time" in CI-like runs).
	benchEvalTimeout = 10 * time.Second
	t.Cleanup(func() { benchEvalTimeout = 0 })
	var out, errOut strings.Builder
	args := []string{"--backends", "sqlite", "--concurrency", "8", "--rate", "50", "--durable", "2", "--duration", "300ms", "--rounds", "1"}
	if err := runBench(t.Context(), args, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s%s", err, out.String(), errOut.String())
	}
	// Every call of the plain sync route had its own transaction; calls of
	// the batched one shared them.
	for line := range strings.Lines(out.String()) {
		rest, ok := strings.CutPrefix(line, "calls per SQL transaction (request path, from the replies' transaction ids): ")
		if !ok {
			continue
		}
		perTx := map[string]float64{}
		for part := range strings.SplitSeq(strings.TrimSpace(rest), "; ") {
			f := strings.Fields(part)
			if len(f) != 4 {
				t.Fatalf("calls per transaction: %q", part)
			}
			perTx[f[1]+" "+f[2]], _ = strconv.ParseFloat(f[3], 64)
		}
		if perTx["sqlgate c=8"] != 1 || perTx["sqlgate+batch c=8"] <= 1 {
			t.Errorf("calls per SQL transaction %v: want exactly 1 for sqlgate and more for sqlgate+batch at c=8", perTx)
		}
	}
	if !strings.Contains(out.String(), "calls per SQL transaction") {
		t.Errorf("no calls-per-transaction line:\n%s", out.String())
	}
	rows := 0
	for line := range strings.Lines(out.String()) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != "sqlite" {
			continue
		}
		rows++
		if n, err := strconv.Atoi(f[3]); err != nil || n == 0 || f[8] != "0" {
			t.Errorf("row %q: want requests answered (req/s > 0) and 0 errors", strings.TrimSpace(line))
		}
	}
	if rows != 8 {
		t.Errorf("%d rows, want 8 (closed and open: bare, sqlgate, sqlgate+batch; durable: bare, sqlgate):\n%s", rows, out.String())
	}
}
