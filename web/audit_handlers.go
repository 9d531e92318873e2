package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

func (s *Server) auditRoutes() {
	if s.cfg.Audit == nil {
		return
	}
	m := s.mux
	m.Handle("GET /api/v1/audit/checkpoint", s.authed(s.auditCheckpoint))
	m.Handle("GET /api/v1/audit/records", s.authed(s.auditRecords))
	m.Handle("GET /api/v1/audit/verify", s.authed(s.auditVerify))
	m.Handle("GET /api/v1/audit/proof", s.authed(s.auditProof))
	m.Handle("GET /api/v1/audit/export", s.authed(s.auditExport))
	m.Handle("GET /api/v1/audit/evidence", s.authed(s.auditEvidence))
}

func (s *Server) policyRoutes() {
	if s.cfg.Policy == nil {
		return
	}
	s.mux.Handle("GET /api/v1/policy/status", s.authed(func(w http.ResponseWriter, _ *http.Request, p identity.Principal) error {
		writeJSON(w, http.StatusOK, s.policyStatus(p))
		return nil
	}))
	s.mux.Handle("POST /api/v1/policy/eval", s.authed(s.policyEval))
	if s.cfg.Audit != nil {
		s.mux.Handle("GET /api/v1/policy/inputs", s.authed(s.policyInputs))
	}
}

// policyStatus is the status of the serving policy as p may see it: why the
// last load failed and where the policy lives (file paths, parser output)
// only for the admin and auditor groups, that it failed for everyone.
func (s *Server) policyStatus(p identity.Principal) PolicyStatus {
	st := s.cfg.Policy.Status()
	st.ReloadFailed = st.ReloadFailed || st.LastError != ""
	if !s.inGroups(p, s.cfg.AdminGroups) && !s.inGroups(p, s.cfg.AuditorGroups) {
		st.LastError, st.Source = "", ""
	}
	return st
}

// policyInputs streams recorded decision inputs for `sqlgate policy
// replay`. They hold parameter values (except redacted ones), so only the
// admin groups may read them.
func (s *Server) policyInputs(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if err := s.requireGroups(p, s.cfg.AdminGroups, "reading recorded decision inputs"); err != nil {
		return err
	}
	since, err := sinceParam(r.URL.Query().Get("since"), s.now())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	return s.cfg.Audit.Inputs(r.Context(), since, w)
}

// sinceParam reads `since` as RFC 3339 or as a duration back from now
// ("24h"); empty is the beginning of the log.
func sinceParam(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, badRequest("since must be an RFC 3339 time or a duration such as 24h")
	}
	return now.Add(-d), nil
}

func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request, _ identity.Principal) error {
	cp, err := s.cfg.Audit.Checkpoint(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = w.Write(cp)
	return err
}

func (s *Server) auditRecords(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if err := s.requireGroups(p, s.cfg.AuditorGroups, "reading the audit log"); err != nil {
		return err
	}
	limit, err := intParam(r, "limit", 100)
	if err != nil {
		return err
	}
	if limit < 1 || limit > 10000 {
		return badRequest("limit must be between 1 and 10000")
	}
	recs, err := s.cfg.Audit.Recent(r.Context(), int(limit))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs})
	return nil
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if err := s.requireGroups(p, s.cfg.AuditorGroups, "verifying the audit log"); err != nil {
		return err
	}
	from, err := intParam(r, "from", 0)
	if err != nil {
		return err
	}
	to, err := intParam(r, "to", 0)
	if err != nil {
		return err
	}
	rep, err := s.cfg.Audit.Verify(r.Context(), from, to)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(rep.JSON)
	return err
}

// auditProof serves receipts: auditors may prove any record, everyone else
// only records they caused.
func (s *Server) auditProof(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	index, err := intParam(r, "index", -1)
	if err != nil {
		return err
	}
	if index < 0 {
		return badRequest("index is required")
	}
	if !s.inGroups(p, s.cfg.AuditorGroups) {
		rec, err := s.cfg.Audit.Record(r.Context(), index)
		if err != nil {
			return err
		}
		if rec.Actor == nil || rec.Actor.Issuer != p.Issuer || rec.Actor.Subject != p.Subject {
			return broker.ErrNotFound
		}
	}
	proof, err := s.cfg.Audit.Proof(r.Context(), index)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(proof) //nolint:gosec // G705: a JSON document served as application/json with nosniff
	return err
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if err := s.requireGroups(p, s.cfg.AuditorGroups, "exporting the audit log"); err != nil {
		return err
	}
	from, err := intParam(r, "from", 0)
	if err != nil {
		return err
	}
	to, err := intParam(r, "to", 0)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="sqlgate-audit.bundle"`)
	return s.cfg.Audit.Export(r.Context(), w, from, to)
}

// auditEvidence serves the SOC 2 evidence archive of a period to auditors:
// from and to are dates (UTC midnight) or RFC 3339 times.
func (s *Server) auditEvidence(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if err := s.requireGroups(p, s.cfg.AuditorGroups, "exporting audit evidence"); err != nil {
		return err
	}
	from, err := periodParam(r, "from")
	if err != nil {
		return err
	}
	to, err := periodParam(r, "to")
	if err != nil {
		return err
	}
	if !from.Before(to) {
		return badRequest("from must be before to")
	}
	// The archive is built before the first byte is written, so an error
	// (a log that does not verify) is still answered as one.
	var zipped bytes.Buffer
	if err := s.cfg.Audit.Evidence(r.Context(), &zipped, from, to); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="sqlgate-evidence-%s-%s.zip"`,
		from.Format("20060102T150405Z"), to.Format("20060102T150405Z")))
	_, err = w.Write(zipped.Bytes())
	return err
}

// periodParam reads a date (UTC midnight) or an RFC 3339 time.
func periodParam(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badRequest(name + " must be a date (YYYY-MM-DD) or an RFC 3339 time")
	}
	return t.UTC(), nil
}

// evalRequest is the body of POST policy/eval.
type evalRequest struct {
	Entry   string          `json:"entry"`
	Input   json.RawMessage `json:"input"`
	Explain bool            `json:"explain"`
}

func (s *Server) policyEval(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if err := s.requireGroups(p, s.cfg.AdminGroups, "evaluating policies"); err != nil {
		return err
	}
	var req evalRequest
	if err := decodeJSON(r, maxDocBody, &req); err != nil {
		return err
	}
	dec, explanation, err := s.evalEntry(r, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"decision": dec, "explanation": explanation})
	return nil
}

func (s *Server) evalEntry(r *http.Request, req evalRequest) (policy.Decision, string, error) {
	entry := policy.Entry(req.Entry)
	if entry == "" {
		entry = policy.Call
	}
	valid := false
	for _, e := range policy.Entries {
		valid = valid || e == entry
	}
	if !valid {
		return policy.Decision{}, "", badRequest("entry must be call, nats or sql_credentials")
	}
	if len(req.Input) == 0 {
		return policy.Decision{}, "", badRequest("input is required")
	}
	dec, explanation, err := s.cfg.Policy.Eval(r.Context(), entry, req.Input, req.Explain)
	if err != nil && explanation == "" {
		explanation = err.Error()
	}
	// Evaluation errors are a deny with a reason, which is the answer.
	return dec, explanation, nil
}

func intParam(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, badRequest(name + " must be an integer")
	}
	return n, nil
}
