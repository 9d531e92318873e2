package web

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
)

// manyLeases is a server where alice holds n NATS credentials issued one
// second apart (U…000 the oldest), every third one expired.
func manyLeases(t *testing.T, n int) (*Server, identity.Principal) {
	t.Helper()
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice"}
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now := base.Add(time.Duration(n) * time.Second)
	m := map[string]broker.Issuance{}
	for i := range n {
		k := fmt.Sprintf("U%06d", i)
		exp := now.Add(time.Hour)
		if i%3 == 0 {
			exp = now.Add(-time.Second)
		}
		m[k] = broker.Issuance{UserKey: k, Principal: alice, IssuedAt: base.Add(time.Duration(i) * time.Second), ExpiresAt: exp}
	}
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Issuances: fakeIssuances{m: m}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s, alice
}

type leaseList struct {
	Leases []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"leases"`
	Next *string `json:"next"`
}

// TestLeasesPaged: GET leases answers at most limit (default 100, at most
// 1000) leases, newest first, with `next` while more exist; following
// `next` lists every lease exactly once.
func TestLeasesPaged(t *testing.T) {
	s, _ := manyLeases(t, 2500)
	alice := map[string]string{"Authorization": "Bearer token-alice"}
	get := func(query string) (leaseList, int, string) {
		rec := do(t, s, "GET", "/api/v1/leases"+query, "", alice)
		var out leaseList
		if rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
		}
		return out, rec.Code, rec.Body.String()
	}
	first, code, _ := get("")
	if code != 200 || len(first.Leases) != 100 || first.Next == nil || first.Leases[0].ID != "U002499" || first.Leases[99].ID != "U002400" {
		t.Fatalf("default page: %d, %d leases, next %v, want 100 newest first with next", code, len(first.Leases), first.Next)
	}
	seen := map[string]bool{}
	query, pages := "?limit=1000", 0
	for {
		page, code, body := get(query)
		if code != 200 {
			t.Fatalf("GET leases%s = %d %s", query, code, body)
		}
		pages++
		for _, l := range page.Leases {
			if seen[l.ID] {
				t.Fatalf("lease %s listed twice", l.ID)
			}
			seen[l.ID] = true
		}
		if page.Next == nil {
			break
		}
		query = "?limit=1000&cursor=" + url.QueryEscape(*page.Next)
	}
	if len(seen) != 2500 || pages != 3 {
		t.Errorf("following next listed %d leases in %d pages, want 2500 in 3", len(seen), pages)
	}
	if last, _, _ := get("?limit=500"); len(last.Leases) != 500 {
		t.Errorf("limit=500 gave %d", len(last.Leases))
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=-1", "?limit=x", "?cursor=nope", "?cursor=" + url.QueryEscape("MTIz")} {
		if _, code, body := get(q); code != 400 {
			t.Errorf("GET leases%s = %d %s, want 400", q, code, body)
		}
	}
}

// TestDashboardLeasesBounded: the dashboard shows the newest 100 active
// credentials and the 20 most recent others, and says that more exist.
func TestDashboardLeasesBounded(t *testing.T) {
	s, alice := manyLeases(t, 3000)
	sess := mustSession(t, s, alice, time.Now().Add(time.Hour))
	page := do(t, s, "GET", "/", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id}).Body.String()
	if n := strings.Count(page, `<tr class="lease-active">`); n != 100 {
		t.Errorf("dashboard shows %d active credentials, want 100", n)
	}
	if n := strings.Count(page, `<tr class="lease-expired">`); n != 20 {
		t.Errorf("dashboard shows %d expired credentials, want 20", n)
	}
	if !strings.Contains(page, `title="U002999"`) || !strings.Contains(page, `title="U002997"`) || strings.Contains(page, `title="U000001"`) {
		t.Error("the dashboard does not show the newest credentials")
	}
	if !strings.Contains(page, `id="leases-more"`) {
		t.Error("the dashboard does not say that more credentials exist")
	}
	few, alice2 := manyLeases(t, 5)
	sess2 := mustSession(t, few, alice2, time.Now().Add(time.Hour))
	if page := do(t, few, "GET", "/", "", map[string]string{"Cookie": sessionCookie + "=" + sess2.id}).Body.String(); strings.Contains(page, `id="leases-more"`) || strings.Count(page, `<tr class="lease-`) != 5 {
		t.Errorf("with 5 credentials the dashboard lists %d and says more: %v", strings.Count(page, `<tr class="lease-`), strings.Contains(page, `id="leases-more"`))
	}
}

// mixedLeases is a server where alice holds nats NATS credentials and sql
// SQL leases, interleaved in time (some issued at the same instant), every
// third one of each ended; the stores count the rows they return.
func mixedLeases(t *testing.T, nats, sql int) (*Server, *pageReads, *fakeSQLLeases) {
	t.Helper()
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice"}
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now := base.Add(time.Duration(nats+sql) * time.Second)
	m := map[string]broker.Issuance{}
	for i := range nats {
		k := fmt.Sprintf("U%06d", i)
		iss := broker.Issuance{UserKey: k, Principal: alice, IssuedAt: base.Add(time.Duration(i) * time.Second), ExpiresAt: now.Add(time.Hour)}
		if i%3 == 0 {
			iss.RevokedAt = now.Add(-time.Second)
		}
		m[k] = iss
	}
	f := &fakeSQLLeases{leases: map[string]broker.Lease{}}
	for i := range sql {
		id := fmt.Sprintf("0190f0b8-0000-7000-8000-%012d", i)
		l := broker.Lease{ID: id, Principal: alice, Username: "sg_alice", State: broker.LeaseActive, IssuedAt: base.Add(time.Duration(3*i) * time.Second), ExpiresAt: now.Add(time.Hour)}
		if i%3 == 1 {
			l.ExpiresAt = now // past expiry, the reaper has not run yet
		}
		f.leases[id] = l
	}
	reads := &pageReads{}
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Issuances: fakeIssuances{m: m, reads: reads}, SQLLeases: f, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s, reads, f
}

// TestLeasesReadBounded: GET leases asks each store for at most limit+1
// rows, however many credentials the caller holds, and following `next`
// still lists every NATS and SQL credential exactly once, newest first.
func TestLeasesReadBounded(t *testing.T) {
	s, natsReads, f := mixedLeases(t, 2000, 700)
	alice := map[string]string{"Authorization": "Bearer token-alice"}
	for _, limit := range []int{100, 1000} {
		*natsReads, f.reads = pageReads{}, pageReads{}
		var listed []string
		last := ""
		query := fmt.Sprintf("?limit=%d", limit)
		for range 100 {
			rec := do(t, s, "GET", "/api/v1/leases"+query, "", alice)
			var page struct {
				Leases []struct {
					ID       string    `json:"id"`
					IssuedAt time.Time `json:"issued_at"`
				} `json:"leases"`
				Next *string `json:"next"`
			}
			if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
				t.Fatalf("GET leases%s = %d %s", query, rec.Code, rec.Body)
			}
			for _, l := range page.Leases {
				at := fmt.Sprintf("%020d.%s", l.IssuedAt.UnixNano(), l.ID)
				if last != "" && at >= last {
					t.Fatalf("%s listed after %s: not newest first", at, last)
				}
				last = at
				listed = append(listed, l.ID)
			}
			if page.Next == nil {
				break
			}
			query = fmt.Sprintf("?limit=%d&cursor=%s", limit, url.QueryEscape(*page.Next))
		}
		if len(listed) != 2700 {
			t.Errorf("limit %d: following next listed %d credentials, want 2700", limit, len(listed))
		}
		if natsReads.calls == 0 || f.reads.calls == 0 || natsReads.most > limit+1 || f.reads.most > limit+1 {
			t.Errorf("limit %d: the stores returned up to %d NATS and %d SQL rows to one request, want at most %d", limit, natsReads.most, f.reads.most, limit+1)
		}
	}
}

// TestDashboardReadBounded: the dashboard asks each store for at most 101
// live and 21 ended credentials, and shows the newest of both kinds.
func TestDashboardReadBounded(t *testing.T) {
	s, natsReads, f := mixedLeases(t, 3000, 1000)
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice"}
	sess := mustSession(t, s, alice, time.Now().Add(time.Hour))
	page := do(t, s, "GET", "/", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id}).Body.String()
	active := strings.Count(page, `<tr class="lease-active">`)
	ended := strings.Count(page, `<tr class="lease-revoked">`) + strings.Count(page, `<tr class="lease-expired">`)
	if active != 100 || ended != 20 || !strings.Contains(page, `id="leases-more"`) {
		t.Errorf("dashboard shows %d active and %d ended credentials (more: %v), want 100 and 20 and more", active, ended, strings.Contains(page, `id="leases-more"`))
	}
	// Among the newest: NATS U002999 (live), SQL lease 999 at 2997s (live),
	// NATS U002997 at 2997s (revoked) and SQL lease 997 at 2991s (past
	// expiry).
	for _, id := range []string{"U002999", "0190f0b8-0000-7000-8000-000000000999", "U002997", "0190f0b8-0000-7000-8000-000000000997"} {
		if !strings.Contains(page, id) {
			t.Errorf("the dashboard does not show %s", id)
		}
	}
	if natsReads.most > dashboardActive+1 || f.reads.most > dashboardActive+1 || natsReads.calls != 2 || f.reads.calls != 2 {
		t.Errorf("the stores returned up to %d NATS and %d SQL rows in %d and %d reads, want at most %d in 2 each", natsReads.most, f.reads.most, natsReads.calls, f.reads.calls, dashboardActive+1)
	}
}
