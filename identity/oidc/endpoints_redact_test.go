package oidc

import (
	"strings"
	"testing"
)

// TestCheckEndpointHidesPassword: the refusal of an endpoint whose text
// holds a user and password never shows the password, whether the text is
// no http(s) URL (//:pw@host) or its password holds an unescaped '/'
// (parsing as a host and a path).
func TestCheckEndpointHidesPassword(t *testing.T) {
	for raw, secret := range map[string]string{
		"//:hunter2@idp.example/token":       "hunter2",
		"ftp://u:hunter2@idp.example/token":  "hunter2",
		"http://u:12/hunter2@idp.example/t":  "12/hunter2",
		"https://u:hun?ter2@idp.example/tok": "hun?ter2",
		"https://u:hunter2@idp.example/t":    "hunter2",
	} {
		err := checkEndpoint(raw)
		if err == nil {
			t.Errorf("checkEndpoint(%s) accepted it", raw)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("checkEndpoint(%s) = %v shows the password", raw, err)
		}
	}
}
