package oidc

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// productionYAML is the identity part of a production configuration, as
// docs/identity.md shows it.
const productionYAML = `
issuers:
  - name: corp
    issuer: https://login.microsoftonline.com/{tenantid}/v2.0
    preset: entra
    audiences: ["4b2f6c1e-9d3a-4f7b-8e21-6a5c0d9b3e74"]
    clientID: 4b2f6c1e-9d3a-4f7b-8e21-6a5c0d9b3e74
    clientSecretFile: /run/secrets/sqlgate-entra
    allowedTenants: ["3d8e1f27-6c4b-4a9e-b1f0-5e7d2c8a9b36", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"]
    groupMap:
      5f1c7a0e-3b1d-4c55-9a51-2b0d8f6e4a11: sales
      a3e7d9c2-8f41-4b6e-b0a4-7c2e91d35f08: support
    dropUnmappedGroups: true
    roleMap: {Orders.Writer: orders.writer}
    dropUnmappedRoles: true
    overage:
      mode: graph
      securityEnabledOnly: true
      timeout: 3s
    clockSkew: 2m
    mfaACRValues: ["c1"]
    allowedClients: ["4b2f6c1e-9d3a-4f7b-8e21-6a5c0d9b3e74", "7e3d1c9a-5b2f-4e8d-a6c1-0f9e8d7c6b5a"]
  - name: contractors
    issuer: https://contoso.okta.com/oauth2/aus1sqlgate
    preset: okta
    audiences: ["api://sqlgate"]
    clientID: 0oa5b7c9d1e3f5g7h9i1
    clientSecretEnv: SQLGATE_OKTA_SECRET
    allowedClients: [0oa1cli2a3b4c5d6e7f8, 0oa9svc8a7b6c5d4e3f2]
    groupMap: {sqlgate-support: support}
    dropUnmappedGroups: true
    dropUnmappedRoles: true
    algorithms: [RS256]
  - name: keycloak
    issuer: https://sso.contoso.example/realms/corp
    audiences: [sqlgate]
    allowedClients: [sqlgate-cli]
    claims:
      roles: realm_access.roles
      groups: groups
    groupMap: {/sqlgate/sales: sales}
    dropUnmappedGroups: true
    roleMap: {orders-writer: orders.writer}
    dropUnmappedRoles: true
    mfaAMRValues: [hwk]
maxTokenBytes: 32768
cacheEntries: 50000
jwksRefreshInterval: 1m
jwksMaxAge: 6h
`

func TestConfigYAMLAndJSON(t *testing.T) {
	t.Parallel()
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(productionYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("decode YAML: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := time.Duration(cfg.Issuers[0].Overage.Timeout); got != 3*time.Second {
		t.Errorf("overage.timeout = %v, want 3s", got)
	}
	if got := time.Duration(cfg.JWKSMaxAge); got != 6*time.Hour {
		t.Errorf("jwksMaxAge = %v, want 6h", got)
	}
	d := cfg.withDefaults()
	entra := d.Issuers[0]
	if entra.DiscoveryURL != "https://login.microsoftonline.com/organizations/v2.0" {
		t.Errorf("template discovery URL = %q", entra.DiscoveryURL)
	}
	if entra.Overage.ClientID != entra.ClientID || entra.Overage.ClientSecretFile != entra.ClientSecretFile ||
		entra.Overage.GraphURL != DefaultGraphURL || entra.Overage.TokenURL != DefaultGraphTokenURL {
		t.Errorf("overage defaults = %+v", entra.Overage)
	}
	if d.Issuers[2].Preset != PresetGeneric || time.Duration(d.Issuers[2].ClockSkew) != DefaultClockSkew {
		t.Errorf("generic defaults = %+v", d.Issuers[2])
	}

	// The same configuration round-trips through JSON with unknown fields
	// refused.
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	jd := json.NewDecoder(bytes.NewReader(b))
	jd.DisallowUnknownFields()
	if err := jd.Decode(&back); err != nil {
		t.Fatalf("decode JSON: %v", err)
	}
	if diff := cmp.Diff(cfg, back); diff != "" {
		t.Errorf("JSON round trip (-yaml +json):\n%s", diff)
	}
	if !strings.Contains(string(b), `"jwksMaxAge":"6h0m0s"`) || !strings.Contains(string(b), `"clientSecretFile"`) {
		t.Errorf("JSON keys are not camelCase durations: %s", b)
	}
	bad := yaml.NewDecoder(strings.NewReader("issuers: []\nclientSecret: inline\n"))
	bad.KnownFields(true)
	if err := bad.Decode(&Config{}); err == nil {
		t.Errorf("an inline clientSecret key was accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := func() IssuerConfig {
		return IssuerConfig{Name: "a", Issuer: "https://idp.example", Audiences: []string{"sqlgate"}}
	}
	tests := []struct {
		name  string
		mod   func(c *Config)
		wants []string
	}{
		{"no_issuers", func(c *Config) { c.Issuers = nil }, []string{"at least one issuer"}},
		{"alg_none", func(c *Config) { c.Issuers[0].Algorithms = []string{"none"} }, []string{`"none" is never allowed`}},
		{"alg_hs256", func(c *Config) { c.Issuers[0].Algorithms = []string{"RS256", "HS256"} }, []string{"HS256 is symmetric"}},
		{"alg_unknown", func(c *Config) { c.Issuers[0].Algorithms = []string{"RS1"} }, []string{"unknown algorithm"}},
		{"plain_http", func(c *Config) { c.Issuers[0].Issuer = "http://idp.example" }, []string{"plain http is allowed only on a loopback"}},
		{"http_loopback_ok", func(c *Config) { c.Issuers[0].Issuer = "http://127.0.0.1:8080/idp" }, nil},
		{"no_audience", func(c *Config) { c.Issuers[0].Audiences = nil }, []string{"at least one accepted audience"}},
		{"both_secrets", func(c *Config) { c.Issuers[0].ClientSecretFile, c.Issuers[0].ClientSecretEnv = "f", "E" }, []string{"not both"}},
		{"template_not_entra", func(c *Config) { c.Issuers[0].Issuer = "https://idp.example/{tenantid}" }, []string{"only for the entra preset"}},
		{"template_without_tenants", func(c *Config) {
			c.Issuers[0].Preset = PresetEntra
			c.Issuers[0].Issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
		}, []string{"needs allowedTenants"}},
		{"tenants_not_entra", func(c *Config) { c.Issuers[0].AllowedTenants = []string{"t"} }, []string{"only for the entra preset"}},
		{"skew_too_large", func(c *Config) { c.Issuers[0].ClockSkew = Duration(time.Hour) }, []string{"clockSkew 1h0m0s out of range"}},
		{"bad_claim_path", func(c *Config) { c.Issuers[0].Claims.Groups = "a..b" }, []string{"invalid claim path"}},
		{"graph_not_entra", func(c *Config) { c.Issuers[0].Overage.Mode = OverageGraph }, []string{"only for the entra preset", "needs a client id", "needs a client secret reference"}},
		{"bad_overage_mode", func(c *Config) { c.Issuers[0].Overage.Mode = "ignore" }, []string{`overage.mode "ignore"`}},
		{"unknown_preset", func(c *Config) { c.Issuers[0].Preset = "azure" }, []string{`unknown preset "azure"`}},
		{"duplicates", func(c *Config) { c.Issuers = append(c.Issuers, c.Issuers[0]) }, []string{"duplicate name", "configured twice"}},
		{"limits", func(c *Config) { c.MaxTokenBytes = 10; c.CacheEntries = -5 }, []string{"maxTokenBytes 10 out of range", "cacheEntries -5"}},
		// Okta's default authorization server serves every app of the org:
		// without allowedClients any of them would sign users in.
		{"okta_default_audience", func(c *Config) {
			c.Issuers[0].Preset = PresetOkta
			c.Issuers[0].Issuer = "https://contoso.okta.com/oauth2/aus1sqlgate"
			c.Issuers[0].Audiences = []string{"api://default"}
		}, []string{"default authorization server (audience api://default", "set allowedClients"}},
		{"okta_default_issuer", func(c *Config) {
			c.Issuers[0].Preset = PresetOkta
			c.Issuers[0].Issuer = "https://contoso.okta.com/oauth2/default/"
		}, []string{"default authorization server"}},
		{"okta_default_with_allowed_clients", func(c *Config) {
			c.Issuers[0].Preset = PresetOkta
			c.Issuers[0].Issuer = "https://contoso.okta.com/oauth2/default"
			c.Issuers[0].Audiences = []string{"api://default"}
			c.Issuers[0].AllowedClients = []string{"0oa1cli2a3b4c5d6e7f8"}
		}, nil},
		{"empty_allowed_client", func(c *Config) { c.Issuers[0].AllowedClients = []string{"cli", " "} }, []string{"allowedClients: empty client id"}},
		{"empty_mfa_amr", func(c *Config) { c.Issuers[0].MFAAMRValues = []string{""} }, []string{"mfaAMRValues: empty amr value"}},
		// With several issuers a group passing through by name would let
		// one directory's administrators grant another's groups.
		{"several_issuers_pass_through", func(c *Config) {
			c.Issuers[0].DropUnmappedGroups, c.Issuers[0].DropUnmappedRoles = true, true
			c.Issuers = append(c.Issuers, IssuerConfig{
				Name: "contractors", Issuer: "https://contractors.okta.com/oauth2/aus1sqlgate", Preset: PresetOkta,
				Audiences: []string{"api://sqlgate"}, GroupMap: map[string]string{"sqlgate-support": "support"}, DropUnmappedRoles: true,
			})
		}, []string{`issuer "contractors": with several issuers every issuer needs dropUnmappedGroups: true`}},
		{"several_issuers_first_passes_through", func(c *Config) {
			c.Issuers[0].DropUnmappedRoles = true
			c.Issuers = append(c.Issuers, IssuerConfig{
				Name: "b", Issuer: "https://idp-b.example", Audiences: []string{"sqlgate"}, DropUnmappedGroups: true, DropUnmappedRoles: true,
			})
		}, []string{`issuer "a": with several issuers every issuer needs dropUnmappedGroups`}},
		// Roles too: policies grant routes by role name (roles:
		// [orders.writer]), so a role passing through by name would let
		// one provider's administrators grant another's roles.
		{"several_issuers_roles_pass_through", func(c *Config) {
			c.Issuers[0].DropUnmappedGroups, c.Issuers[0].DropUnmappedRoles = true, true
			c.Issuers = append(c.Issuers, IssuerConfig{
				Name: "contractors", Issuer: "https://contractors.okta.com/oauth2/aus1sqlgate", Preset: PresetOkta,
				Audiences: []string{"api://sqlgate"}, DropUnmappedGroups: true, RoleMap: map[string]string{"writer": "orders.writer"},
			})
		}, []string{`issuer "contractors": with several issuers every issuer needs dropUnmappedRoles: true`, "roleMap"}},
		{"several_issuers_dropping", func(c *Config) {
			c.Issuers[0].DropUnmappedGroups, c.Issuers[0].DropUnmappedRoles = true, true
			c.Issuers = append(c.Issuers, IssuerConfig{
				Name: "b", Issuer: "https://idp-b.example", Audiences: []string{"sqlgate"}, DropUnmappedGroups: true, DropUnmappedRoles: true,
			})
		}, nil},
		{"empty_role_name", func(c *Config) { c.Issuers[0].RoleMap = map[string]string{"Orders.Writer": ""} }, []string{`roleMap: empty role name in "Orders.Writer"`}},
		{"one_issuer_pass_through", func(*Config) {}, nil},
		{"many_problems_at_once", func(c *Config) {
			c.Issuers[0].Name = ""
			c.Issuers[0].Audiences = nil
			c.Issuers[0].Algorithms = []string{"HS512"}
		}, []string{"name is required", "at least one accepted audience", "HS512 is symmetric"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Issuers: []IssuerConfig{good()}}
			tc.mod(&cfg)
			err := cfg.Validate()
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors %q", tc.wants)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestClientSecretReferences(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "secret")
	if err := os.WriteFile(f, []byte("s3cr3t-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := (IssuerConfig{ClientSecretFile: f}).ClientSecret(); err != nil || s != "s3cr3t-from-file" {
		t.Errorf("secret from file = %q, %v", s, err)
	}
	t.Setenv("SQLGATE_TEST_OIDC_SECRET", "s3cr3t-from-env")
	if s, err := (IssuerConfig{ClientSecretEnv: "SQLGATE_TEST_OIDC_SECRET"}).ClientSecret(); err != nil || s != "s3cr3t-from-env" {
		t.Errorf("secret from env = %q, %v", s, err)
	}
	if _, err := (IssuerConfig{ClientSecretEnv: "SQLGATE_TEST_OIDC_UNSET"}).ClientSecret(); err == nil {
		t.Errorf("unset environment variable accepted")
	}
	if _, err := (IssuerConfig{ClientSecretFile: filepath.Join(dir, "missing")}).ClientSecret(); err == nil {
		t.Errorf("missing secret file accepted")
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := (IssuerConfig{ClientSecretFile: empty}).ClientSecret(); err == nil {
		t.Errorf("empty secret file accepted")
	}
}

// FuzzConfig decodes arbitrary YAML as a configuration and validates it:
// never a panic, and a valid configuration keeps sane defaults.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(productionYAML))
	f.Add([]byte("issuers: [{name: a, issuer: 'https://x/{tenantid}', preset: entra, audiences: [a]}]"))
	f.Add([]byte("issuers: [{name: a, issuer: 'http://[::1]/', audiences: [''], clockSkew: -1s}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var cfg Config
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if dec.Decode(&cfg) != nil {
			return
		}
		if cfg.Validate() != nil {
			return
		}
		d := cfg.withDefaults()
		if d.MaxTokenBytes <= 0 || d.MaxTokenBytes > maxTokenBytesCeiling || d.JWKSRefreshInterval < 0 {
			t.Fatalf("valid config with bad limits: %+v", d)
		}
		for _, ic := range d.Issuers {
			if len(ic.Algorithms) == 0 || len(ic.Audiences) == 0 || time.Duration(ic.ClockSkew) > MaxClockSkew {
				t.Fatalf("valid issuer with unsafe settings: %+v", ic)
			}
			for _, a := range ic.Algorithms {
				if a == "none" || strings.HasPrefix(a, "HS") {
					t.Fatalf("valid issuer allows %s", a)
				}
			}
		}
	})
}
