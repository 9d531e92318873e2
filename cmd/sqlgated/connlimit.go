package main

import (
	"net"

	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
)

// metricsConnections bounds the connections http.metricsListen keeps open
// at once: scrapers are few, and the API's bound leaves the descriptors
// this one needs.
const metricsConnections = 64

// defaultHTTPConnections is the API listener's bound when the file
// descriptor limit cannot be read.
const defaultHTTPConnections = 4096

// httpConnections returns how many connections the API and dashboard's
// listener keeps open at once: http.maxConnections, or else half the
// process's file descriptor limit. Without a bound, clients that open
// connections and leave them idle used every descriptor, and NATS, the
// databases and the policy's files failed with "too many open files"
// (a failed policy reload, a broken JetStream consumer). Past the bound
// the listener accepts no more until one closes: new clients wait in the
// kernel's backlog, and the rest of the process keeps its descriptors.
func httpConnections(configured int) int {
	if configured > 0 {
		return configured
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur < 2 {
		return defaultHTTPConnections
	}
	return int(min(rl.Cur/2, 1<<20))
}

// limitConnections bounds ln to n connections open at once.
func limitConnections(ln net.Listener, n int) net.Listener {
	return netutil.LimitListener(ln, n)
}
