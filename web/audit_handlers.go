package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
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
	m.Handle("POST /api/v1/audit/export", s.authed(s.auditExport))
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
	out := &download{w: w, headers: map[string]string{"Content-Type": "application/x-ndjson"}}
	if err := s.cfg.Audit.Inputs(r.Context(), since, out); err != nil {
		return auditFailure(err)
	}
	out.start()
	return nil
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
		return auditFailure(err)
	}
	noStore(w)
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
		return auditFailure(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs})
	return nil
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if err := s.requireGroups(p, s.cfg.AuditorGroups, "verifying the audit log"); err != nil {
		return err
	}
	from, to, err := rangeParams(r)
	if err != nil {
		return err
	}
	rep, err := s.cfg.Audit.Verify(r.Context(), from, to)
	if err != nil {
		return auditFailure(err)
	}
	noStore(w)
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(rep.JSON)
	return err
}

// auditProof serves receipts: auditors may prove any record, everyone else
// only records they caused.
func (s *Server) auditProof(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if r.URL.Query().Get("index") == "" {
		return badRequest("index is required")
	}
	index, err := intParam(r, "index", 0)
	if err != nil {
		return err
	}
	if index < 0 {
		return badRequest("index must not be negative")
	}
	if !s.inGroups(p, s.cfg.AuditorGroups) {
		rec, err := s.cfg.Audit.Record(r.Context(), index)
		if err != nil {
			return auditFailure(err)
		}
		if rec.Actor == nil || rec.Actor.Issuer != p.Issuer || rec.Actor.Subject != p.Subject {
			return broker.ErrNotFound
		}
	}
	proof, err := s.cfg.Audit.Proof(r.Context(), index)
	if err != nil {
		return auditFailure(err)
	}
	noStore(w)
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(proof) //nolint:gosec // G705: a JSON document served as application/json with nosniff
	return err
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if err := s.requireGroups(p, s.cfg.AuditorGroups, "exporting the audit log"); err != nil {
		return err
	}
	from, to, err := rangeParams(r)
	if err != nil {
		return err
	}
	proofs, err := exportProofs(r)
	if err != nil {
		return err
	}
	// The attachment headers go out with the first byte: an error before
	// it is an ordinary JSON error (a browser does not save it as the
	// bundle), and one after it cuts the transfer ([Server.handle]).
	out := &download{w: w, headers: map[string]string{
		"Content-Type":        "application/x-ndjson",
		"Content-Disposition": `attachment; filename="sqlgate-audit.bundle"`,
	}}
	if err := s.cfg.Audit.Export(r.Context(), out, from, to, proofs); err != nil {
		return auditFailure(err)
	}
	out.start()
	return nil
}

// maxProofsBody bounds the body of POST audit/export: [audit.MaxProofSizes]
// sizes of up to 19 digits and their commas fit.
const maxProofsBody = 256 << 10

// exportProofs reads the tree sizes of the export's consistency proofs: the
// body of a POST ([api.AuditExportRequest], what the CLI sends: thousands
// of sizes in a URL outgrow the header limit, HTTP 431), or a GET's proofs
// parameter.
func exportProofs(r *http.Request) ([]int64, error) {
	if r.Method != http.MethodPost {
		return proofSizes(r.URL.Query().Get("proofs"))
	}
	if r.URL.Query().Has("proofs") {
		return nil, badRequest("a POST gives proofs in its body ({\"proofs\":[sizes]}), not in the URL")
	}
	var req api.AuditExportRequest
	if err := decodeJSON(r, maxProofsBody, &req); err != nil {
		return nil, err
	}
	if len(req.Proofs) > audit.MaxProofSizes {
		return nil, badRequest(fmt.Sprintf("proofs holds %d sizes, at most %d", len(req.Proofs), audit.MaxProofSizes))
	}
	for _, n := range req.Proofs {
		if n <= 0 {
			return nil, badRequest("proofs must be tree sizes above 0 (those of trusted checkpoint copies)")
		}
	}
	return req.Proofs, nil
}

// proofSizes reads the export's proofs parameter: comma-separated tree
// sizes (the auditor's trusted checkpoint copies) for which the bundle
// carries a consistency proof to each origin's first exported record.
func proofSizes(v string) ([]int64, error) {
	if v == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > audit.MaxProofSizes {
		return nil, badRequest(fmt.Sprintf("proofs holds %d sizes, at most %d", len(parts), audit.MaxProofSizes))
	}
	out := make([]int64, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n <= 0 {
			return nil, badRequest("proofs must be comma-separated tree sizes above 0 (those of trusted checkpoint copies)")
		}
		out = append(out, n)
	}
	return out, nil
}

// rangeParams reads the record range [from, to) of verify and export:
// from at least 0, to 0 (up to the latest) or after from.
func rangeParams(r *http.Request) (from, to int64, err error) {
	if from, err = intParam(r, "from", 0); err != nil {
		return 0, 0, err
	}
	if to, err = intParam(r, "to", 0); err != nil {
		return 0, 0, err
	}
	switch {
	case from < 0:
		return 0, 0, badRequest("from must not be negative")
	case to < 0:
		return 0, 0, badRequest("to must not be negative (0: up to the latest record)")
	case to != 0 && to <= from:
		return 0, 0, badRequest("to must be after from (the range is [from, to); 0: up to the latest record)")
	}
	return from, to, nil
}

// auditEvidence serves the SOC 2 evidence archive of a period to auditors:
// from and to are dates (UTC midnight) or RFC 3339 times. A browser's
// request that another site started is refused (see [crossSite]).
func (s *Server) auditEvidence(w http.ResponseWriter, r *http.Request, p identity.Principal) error {
	if crossSite(r) {
		return errCrossSiteEvidence
	}
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
	if now := s.now(); to.After(now) {
		// The log cannot cover what has not happened: the archive would
		// look complete for a period that has not ended.
		return badRequest(fmt.Sprintf("to (%s) is in the future: the period must have ended (a date is midnight UTC: at most today's date, or a time up to now, %s)",
			to.Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	}
	// The archive is built in a temporary file before the first byte is
	// written, so an error (a log that does not verify) is still answered
	// as one, and a large archive is not held in memory.
	f, err := os.CreateTemp("", "sqlgate-evidence-*.zip")
	if err != nil {
		return fmt.Errorf("evidence: temporary file: %w", err)
	}
	defer func() {
		_ = f.Close()
		if rerr := os.Remove(f.Name()); rerr != nil {
			s.log.ErrorContext(r.Context(), "remove the evidence temporary file", "err", rerr)
		}
	}()
	if err := s.cfg.Audit.Evidence(r.Context(), f, from, to); err != nil {
		return auditFailure(err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("evidence: temporary file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("evidence: temporary file: %w", err)
	}
	noStore(w)
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="sqlgate-evidence-%s-%s.zip"`,
		from.Format("20060102T150405Z"), to.Format("20060102T150405Z")))
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("evidence: send the archive: %w", err)
	}
	return nil
}

// crossSite reports whether a browser says that another site started r
// (Sec-Fetch-Site: cross-site): a link or a script there, which a GET
// with the SameSite=Lax session cookie would let run a check of the whole
// audit log in an auditor's name. Browsers send the header with every
// request; the CLI and API clients (bearer tokens) send none.
func crossSite(r *http.Request) bool {
	return r.Header.Get("Sec-Fetch-Site") == "cross-site"
}

// errCrossSiteEvidence answers an evidence request another site started.
var errCrossSiteEvidence = &HTTPError{
	Status: http.StatusForbidden, Code: broker.CodeForbidden,
	Msg: "the evidence archive is not built for a request another site started: download it from the dashboard's audit page",
}

// The evidence period lies within what the audit log's nanosecond
// timestamps can hold.
var (
	minPeriod = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxPeriod = time.Date(2262, 4, 11, 0, 0, 0, 0, time.UTC)
)

// periodParam reads a date (UTC midnight) or an RFC 3339 time between
// 1970-01-01 and 2262-04-11.
func periodParam(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		if t, err = time.Parse(time.RFC3339, v); err != nil {
			return time.Time{}, badRequest(name + " must be a date (YYYY-MM-DD) or an RFC 3339 time")
		}
	}
	t = t.UTC()
	if t.Before(minPeriod) || t.After(maxPeriod) {
		return time.Time{}, badRequest(name + " must be between 1970-01-01 and 2262-04-11")
	}
	return t, nil
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
	ev, err := s.evalEntry(r, req)
	if err != nil {
		return err
	}
	body := map[string]any{"decision": ev.Decision, "explanation": ev.Explanation}
	if ev.Error != "" {
		body["error"] = ev.Error
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// evalOutcome is a policy evaluation's answer: the decision, the
// explanation when asked for, and the evaluation error the decision fell
// back to a deny for.
type evalOutcome struct {
	Decision    policy.Decision
	Explanation string
	Error       string
}

func (s *Server) evalEntry(r *http.Request, req evalRequest) (evalOutcome, error) {
	entry := policy.Entry(req.Entry)
	if entry == "" {
		entry = policy.Call
	}
	valid := false
	for _, e := range policy.Entries {
		valid = valid || e == entry
	}
	if !valid {
		return evalOutcome{}, badRequest("entry must be call, nats or sql_credentials")
	}
	if len(req.Input) == 0 {
		return evalOutcome{}, badRequest("input is required")
	}
	dec, explanation, err := s.cfg.Policy.Eval(r.Context(), entry, req.Input, req.Explain)
	var he *HTTPError
	if errors.As(err, &he) {
		return evalOutcome{}, err // an input that is not decided (400)
	}
	ev := evalOutcome{Decision: dec, Explanation: explanation}
	if err != nil {
		// An evaluation error: the deny it fell back to is the answer,
		// with the error beside it.
		ev.Error = err.Error()
	}
	return ev, nil
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
