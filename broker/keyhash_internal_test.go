package broker

import "testing"

// TestRequestHashAndKeyBytes pins the request hash and the scoped
// idempotency key (both stored in every target database's idempotency
// records, so a retry after an upgrade must compute the same values): the
// hex SHA-256 of the two parts joined by a newline.
func TestRequestHashAndKeyBytes(t *testing.T) {
	if got := requestHash("orders.v1.create", []byte(`{"amount":1,"customer":"ACME"}`)); got != "a3d8f07db763793f607da51ed18731388375c39e8fd55817acd988e923dc0b3d" {
		t.Errorf("requestHash = %s", got)
	}
	if got := idempotencyKey("https://idp.example|alice", "key-1"); got != "73abc39756f67180fb86b6effde2299ffd91203a56dd2349a24f0aa6cd5825d2" {
		t.Errorf("idempotencyKey = %s", got)
	}
}
