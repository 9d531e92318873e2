package devidp

import (
	"slices"
	"testing"
)

// TestClaimsRequestMemberNamesAreExact: a claim request's essential, value
// and values are read by their exact names (OpenID Connect member names are
// case-sensitive): "VALUE" or "Values" asks for nothing; {"VALUE":"c1"}
// gave tokens the acrs c1.
func TestClaimsRequestMemberNamesAreExact(t *testing.T) {
	for _, tc := range []struct {
		raw         string
		access, id  []string
		wantRefusal bool
	}{
		{raw: `{"access_token":{"acrs":{"VALUE":"c1"}}}`},
		{raw: `{"id_token":{"acrs":{"Values":["c1","c2"],"Essential":true}}}`},
		{raw: `{"access_token":{"acrs":{"Value":"c1","values":["c2"]}}}`, access: []string{"c2"}},
		{
			raw:    `{"access_token":{"acrs":{"essential":true,"value":"c1"}},"id_token":{"acrs":{"values":["c1","c3"]}}}`,
			access: []string{"c1"}, id: []string{"c1", "c3"},
		},
		{raw: `{"access_token":{"acrs":{"ESSENTIAL":"yes","value":"c1"}}}`, access: []string{"c1"}},
		{raw: `{"access_token":{"acrs":{"essential":"yes","value":"c1"}}}`, wantRefusal: true},
		{raw: `{"access_token":{"acrs":{"value":1}}}`, wantRefusal: true},
	} {
		got, err := parseClaimsRequest(tc.raw)
		if (err != nil) != tc.wantRefusal {
			t.Errorf("%s: error %v, want refusal %v", tc.raw, err, tc.wantRefusal)
			continue
		}
		if !slices.Equal(got.access, tc.access) || !slices.Equal(got.id, tc.id) {
			t.Errorf("%s: acrs access %q id %q, want access %q id %q", tc.raw, got.access, got.id, tc.access, tc.id)
		}
	}
}
