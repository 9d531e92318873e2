package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlgate/sqlgate/internal/golden"
)

func TestMarshalCanonicalGolden(t *testing.T) {
	var got bytes.Buffer
	for _, r := range sampleRecords() {
		b, err := r.MarshalCanonical()
		if err != nil {
			t.Fatalf("MarshalCanonical(%d) = %v", r.Index, err)
		}
		got.Write(b)
		got.WriteByte('\n')
	}
	golden.Compare(t, filepath.Join("testdata", "records.golden"), got.Bytes())
}

func TestDecodeRecordRoundTrip(t *testing.T) {
	for _, r := range sampleRecords() {
		data, err := r.MarshalCanonical()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRecord(data)
		if err != nil {
			t.Fatalf("DecodeRecord(%s) = %v", data, err)
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("DecodeRecord(MarshalCanonical(r)) differs (-want +got):\n%s", diff)
		}
		// encoding/json reads the canonical form to the same value.
		var std Record
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("json.Unmarshal = %v", err)
		}
		if diff := cmp.Diff(r, &std); diff != "" {
			t.Errorf("json.Unmarshal differs (-want +got):\n%s", diff)
		}
	}
}

func TestMarshalCanonicalMatchesEncodingJSONWithoutHTMLEscape(t *testing.T) {
	// Apart from HTML escaping (which encoding/json adds and we do not), our
	// encoder and encoding/json agree on field names and order.
	for _, r := range sampleRecords() {
		ours, err := r.MarshalCanonical()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
		std := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		// encoding/json escapes U+2028 and uses \u0001; normalize those.
		std = bytes.ReplaceAll(std, []byte(`\u2028`), []byte("\u2028"))
		if !bytes.Equal(ours, std) {
			t.Errorf("record %d:\nours %s\njson %s", r.Index, ours, std)
		}
	}
}

// canonicalSample is a small valid record used to build rejects.
const canonicalSample = `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","correlation_id":"c","params":{"a":"x","b":"y"}}`

var rejectCases = []struct {
	name string
	in   string
}{
	{"empty", ``},
	{"not_object", `[]`},
	{"whitespace", `{"v":1, "index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"leading_space", ` ` + canonicalSample},
	{"trailing_newline", canonicalSample + "\n"},
	{"trailing_data", canonicalSample + `{}`},
	{"reordered", `{"index":5,"v":1,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"unknown_field", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","extra":1}`},
	{"duplicate_field", `{"v":1,"index":5,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"case_folded_key", `{"V":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"missing_instance", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o"}`},
	{"version_2", `{"v":2,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"unknown_kind", `{"v":1,"index":5,"kind":"other","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"negative_index", `{"v":1,"index":-5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"leading_zero", `{"v":1,"index":05,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"float_index", `{"v":1,"index":5.0,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"exponent_index", `{"v":1,"index":5e0,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"overflow_index", `{"v":1,"index":99999999999999999999,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i"}`},
	{"non_utc_time", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T11:00:00.5+01:00","origin":"o","instance":"i"}`},
	{"time_trailing_zero", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.50Z","origin":"o","instance":"i"}`},
	{"zero_time", `{"v":1,"index":5,"kind":"intent","time":"0001-01-01T00:00:00Z","origin":"o","instance":"i"}`},
	{"empty_optional", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","correlation_id":""}`},
	{"zero_optional_int", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","intent_index":0}`},
	{"null_actor", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","actor":null}`},
	{"empty_params", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","params":{}}`},
	{"empty_reasons", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","reasons":[]}`},
	{"unsorted_params", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","params":{"b":"y","a":"x"}}`},
	{"duplicate_param", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","params":{"a":"x","a":"x"}}`},
	{"escaped_letter", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"\u006f","instance":"i"}`},
	{"escaped_slash", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"a\/b","instance":"i"}`},
	{"html_escape", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"\u003c"}`},
	{"uppercase_hex_escape", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"\u001F"}`},
	{"long_escape_for_newline", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"\u000a"}`},
	{"raw_control", "{\"v\":1,\"index\":5,\"kind\":\"intent\",\"time\":\"2026-11-27T10:00:00.5Z\",\"origin\":\"o\",\"instance\":\"\x01\"}"},
	{"invalid_utf8", "{\"v\":1,\"index\":5,\"kind\":\"intent\",\"time\":\"2026-11-27T10:00:00.5Z\",\"origin\":\"o\",\"instance\":\"\xff\"}"},
	{"surrogate_escape", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"\ud83d\ude00"}`},
	{"mfa_omitted", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","actor":{"subject":"s"}}`},
	{"bool_as_string", `{"v":1,"index":5,"kind":"intent","time":"2026-11-27T10:00:00.5Z","origin":"o","instance":"i","allow":"true"}`},
	{"truncated", canonicalSample[:len(canonicalSample)-1]},
}

func TestDecodeRecordRejects(t *testing.T) {
	if _, err := DecodeRecord([]byte(canonicalSample)); err != nil {
		t.Fatalf("DecodeRecord(sample) = %v, want nil", err)
	}
	for _, tc := range rejectCases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := DecodeRecord([]byte(tc.in))
			if err == nil {
				t.Fatalf("DecodeRecord(%s) = %+v, nil; want error", tc.in, r)
			}
		})
	}
}

func TestDecodeRecordErrorKinds(t *testing.T) {
	_, err := DecodeRecord([]byte(strings.Replace(canonicalSample, `"o"`, `"\u006f"`, 1)))
	if !errors.Is(err, ErrNotCanonical) {
		t.Errorf("escaped letter: err = %v, want ErrNotCanonical", err)
	}
}

func TestMarshalCanonicalRejects(t *testing.T) {
	ok := func() *Record {
		return &Record{V: 1, Index: 1, Kind: KindAdmin, Time: testTime, Origin: "o", Admin: &Admin{Action: "x"}}
	}
	tests := []struct {
		name   string
		mutate func(*Record)
	}{
		{"version", func(r *Record) { r.V = 0 }},
		{"kind", func(r *Record) { r.Kind = "bogus" }},
		{"zero_time", func(r *Record) { r.Time = time.Time{} }},
		{"negative_index", func(r *Record) { r.Index = -1 }},
		{"negative_intent", func(r *Record) { r.IntentIndex = -2 }},
		{"empty_origin", func(r *Record) { r.Origin = "" }},
		{"invalid_utf8", func(r *Record) { r.Admin.Detail = "\xc3" }},
		{"invalid_utf8_param", func(r *Record) { r.Params = map[string]string{"\xff": "x"} }},
		{"year_10000", func(r *Record) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	if _, err := ok().MarshalCanonical(); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.mutate(r)
			buf := []byte("prefix")
			out, err := r.AppendCanonical(buf)
			if err == nil {
				t.Fatalf("AppendCanonical = %s, nil; want error", out)
			}
			if string(out) != "prefix" {
				t.Errorf("AppendCanonical on error = %q, want the input unchanged", out)
			}
		})
	}
}

func TestMarshalCanonicalNormalizesTime(t *testing.T) {
	loc := time.FixedZone("x", 3600)
	r := &Record{V: 1, Kind: KindHeartbeat, Time: testTime.In(loc), Origin: "o"}
	b, err := r.MarshalCanonical()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"time":"2026-11-27T10:00:00.123456789Z"`) {
		t.Errorf("MarshalCanonical = %s, want UTC time", b)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		b, _ := r.MarshalCanonical()
		f.Add(b)
	}
	f.Add([]byte(canonicalSample))
	for _, tc := range rejectCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRecord(data)
		if err != nil {
			return
		}
		again, err := r.MarshalCanonical()
		if err != nil {
			t.Fatalf("accepted record does not re-encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted non-canonical input:\n in  %q\n out %q", data, again)
		}
		var std Record
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("accepted input encoding/json rejects: %v\n%q", err, data)
		}
		if diff := cmp.Diff(r, &std); diff != "" {
			t.Fatalf("decoders disagree (-ours +encoding/json):\n%s", diff)
		}
	})
}
