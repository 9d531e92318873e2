package web

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// NotReady is one reason the instance cannot serve, reported by
// [Config.Ready].
type NotReady struct {
	// Component is a fixed name ("policy", "nats", "control database",
	// "audit log"):
	// /readyz shows it to anyone, so it must not carry the error's detail.
	Component string
	// Err is the detail for operators: logged, never served.
	Err error
}

// readinessLogEvery bounds how often an unchanged not-ready state is logged
// again while probes keep failing.
const readinessLogEvery = time.Minute

// readiness remembers what /readyz last logged, so that the details are
// logged when the set of components that are not ready changes and at most
// once per readinessLogEvery while it stays the same.
type readiness struct {
	mu       sync.Mutex
	probed   bool
	last     string // not-ready components, comma-joined; "" when ready
	loggedAt time.Time
}

// readyResponse is the body of /readyz.
type readyResponse struct {
	Status   string   `json:"status"`
	Ready    bool     `json:"ready"`
	NotReady []string `json:"not_ready,omitempty"`
}

// readyz answers load balancers and probes, unauthenticated: 200 when ready,
// else 503 naming the components that are not ready. Why they are not is in
// the log (and, for the policy, on the policy status for admins and
// auditors), because it can name hosts, logins and file paths.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	var problems []NotReady
	if s.cfg.Ready != nil {
		problems = s.cfg.Ready(r.Context())
	}
	components := []string{}
	for _, p := range problems {
		if !slices.Contains(components, p.Component) {
			components = append(components, p.Component)
		}
	}
	s.logReadiness(r.Context(), problems, components)
	if len(components) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, readyResponse{Status: "not ready", NotReady: components})
		return
	}
	writeJSON(w, http.StatusOK, readyResponse{Status: "ready", Ready: true})
}

func (s *Server) logReadiness(ctx context.Context, problems []NotReady, components []string) {
	key := strings.Join(components, ",")
	now := s.now()
	s.ready.mu.Lock()
	changed := !s.ready.probed || key != s.ready.last
	due := key != "" && !now.Before(s.ready.loggedAt.Add(readinessLogEvery))
	if changed || due {
		s.ready.probed, s.ready.last, s.ready.loggedAt = true, key, now
	}
	s.ready.mu.Unlock()
	if !changed && !due {
		return
	}
	if key == "" {
		s.log.InfoContext(ctx, "ready")
		return
	}
	for _, p := range problems {
		// "check", not "component": the logger already names its
		// component (web), and a second key of that name is ambiguous.
		s.log.WarnContext(ctx, "not ready", "check", p.Component, "err", p.Err)
	}
}
