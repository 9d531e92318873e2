package audit

import (
	"testing"
	"time"
)

func probeRecord() *Record {
	allow := true
	return &Record{V: 1, Index: 123456, Kind: KindIntent, Time: time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC),
		Origin: "sqlgate.example/instance-1", Instance: "host-1",
		CorrelationID: "0193b1f2-7c4e-7a00-8d3b-5c6f7e8a9b0c",
		Actor:         &Actor{Issuer: "https://login.microsoftonline.com/tenant/v2.0", Subject: "alice-subject-123", Email: "alice@example.com", MFA: true, NATSUserKey: "UABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUV", Transport: "nats"},
		DecisionID:    "0193b1f2-7c4e-7a00-8d3b-5c6f7e8a9b0d", Entry: "call", PolicyRevision: "3f2a9c4e8b1d7f6a5e4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e", Allow: &allow,
		Route: "orders.v1.create", TargetKind: "statement", Target: "orders_create",
		Params: map[string]string{"amount": "hmac-sha256:k1:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "customer": "hmac-sha256:k1:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"},
		IdempotencyKey: "idem-1"}
}

func BenchmarkProbeEncode(b *testing.B) {
	r := probeRecord()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = r.AppendCanonical(buf[:0])
	}
	b.Log(len(buf))
}

func BenchmarkProbeDecode(b *testing.B) {
	data, _ := probeRecord().MarshalCanonical()
	var scratch []byte
	b.ReportAllocs()
	for b.Loop() {
		var r Record
		if err := decodeRecordInto(&r, data, &scratch); err != nil {
			b.Fatal(err)
		}
	}
}
