package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sqlgate/sqlgate/deploy/image/podmantest"
	"github.com/sqlgate/sqlgate/internal/testnet"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

const chartDir = "../../deploy/helm/sqlgate"

// helmBinary returns the helm named by SQLGATE_TEST_HELM (make deploy-test
// builds it from deploy/helm-tools.mod).
func helmBinary(t *testing.T) string {
	t.Helper()
	helm := os.Getenv("SQLGATE_TEST_HELM")
	if helm == "" {
		t.Skip("SQLGATE_TEST_HELM is not set: run make deploy-test")
	}
	return helm
}

// chartValues returns values that deploy the example configuration
// (deploy/examples) with the default policy library.
func chartValues(t *testing.T) map[string]any {
	t.Helper()
	var config map[string]any
	example, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(example, &config); err != nil {
		t.Fatal(err)
	}
	// What the chart sets itself.
	delete(config, "routes")
	delete(config, "instance")
	delete(config["http"].(map[string]any), "listen")
	delete(config["http"].(map[string]any), "metricsListen") // metrics.port
	delete(config["http"].(map[string]any), "tlsCertFile")
	delete(config["http"].(map[string]any), "tlsKeyFile")
	delete(config["policy"].(map[string]any), "dir")
	delete(config["audit"].(map[string]any), "origin")
	delete(config["audit"].(map[string]any), "signingKeyFile")
	routes, err := os.ReadFile("../../deploy/examples/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{
		"config": config,
		"routes": string(routes),
		"policy": map[string]any{"files": flatPolicy(t)},
		"tls":    map[string]any{"secretName": "sqlgate-tls"},
		"secretMounts": []any{
			map[string]any{"name": "secrets", "secretName": "sqlgate-secrets", "mountPath": "/etc/sqlgate/secrets"},
			map[string]any{"name": "nats-keys", "secretName": "sqlgate-nats", "mountPath": "/etc/sqlgate/nats"},
		},
	}
}

// flatPolicy returns the default policy library, without its tests, as the
// flat file map of the chart's policy.files.
func flatPolicy(t *testing.T) map[string]any {
	t.Helper()
	policy := map[string]any{}
	err := fs.WalkDir(rules.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		b, err := fs.ReadFile(rules.FS, p)
		policy[path.Base(p)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return policy
}

// valuesFile writes values as a Helm values file and returns its path.
func valuesFile(t *testing.T, values map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// helmTemplate renders the chart with values and returns its objects by
// "Kind/name", or helm's error output.
func helmTemplate(t *testing.T, helm string, values map[string]any) (map[string]map[string]any, error) {
	t.Helper()
	file := valuesFile(t, values)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), helm, "template", "prod", chartDir, "--namespace", "sqlgate", "--kube-version", "1.31.0", "-f", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, errors.New(stderr.String())
	}
	objs := map[string]map[string]any{}
	dec := yaml.NewDecoder(&stdout)
	for {
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			t.Fatalf("helm rendered invalid YAML: %v", err)
		}
		if o == nil {
			continue
		}
		objs[o["kind"].(string)+"/"+dig[string](t, o, "metadata", "name")] = o
	}
}

// dig returns the value at keys inside nested maps (an int key indexes a list).
func dig[T any](t *testing.T, v any, keys ...any) T {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a map at %q", keys, k)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("%v: no item %d", keys, k)
			}
			v = l[k]
		}
	}
	out, ok := v.(T)
	if !ok {
		t.Fatalf("%v = %#v (%T)", keys, v, v)
	}
	return out
}

func strs(t *testing.T, v any, keys ...any) []string {
	t.Helper()
	var out []string
	for _, s := range dig[[]any](t, v, keys...) {
		out = append(out, s.(string))
	}
	return out
}

// writeConfigMapVolume lays out a ConfigMap's data as the kubelet does: the
// files in a timestamped directory, ..data pointing at it, and each name a
// symbolic link through ..data.
func writeConfigMapVolume(t *testing.T, dir string, data map[string]any) {
	t.Helper()
	stamped := filepath.Join(dir, "..2026_11_27_12_00_00.000000001")
	if err := os.MkdirAll(stamped, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(stamped), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name, body := range data {
		if err := os.WriteFile(filepath.Join(stamped, name), []byte(body.(string)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHelmChart renders deploy/helm/sqlgate with the example configuration
// and checks what a cluster would run: the rendered configuration, route
// catalog and policy pass `sqlgated serve --check` laid out as the pod sees
// them, the pod is sandboxed, the probes and ports agree, and values the
// chart cannot honour are refused with a message.
func TestHelmChart(t *testing.T) {
	helm := helmBinary(t)
	values := chartValues(t)
	objs, err := helmTemplate(t, helm, values)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	sts, ok := objs["StatefulSet/prod-sqlgate"]
	if !ok {
		t.Fatalf("no StatefulSet/prod-sqlgate among %v", slices.Sorted(func(yield func(string) bool) {
			for k := range objs {
				if !yield(k) {
					return
				}
			}
		}))
	}
	pod := dig[map[string]any](t, sts, "spec", "template", "spec")

	t.Run("serve --check on the rendered files", func(t *testing.T) {
		cm := objs["ConfigMap/prod-sqlgate"]
		policy := objs["ConfigMap/prod-sqlgate-policy"]
		if cm == nil || policy == nil {
			t.Fatal("the configuration or policy ConfigMap is missing")
		}
		root := t.TempDir()
		config := dig[string](t, cm, "data", "sqlgated.yaml")
		for _, mount := range []string{"/etc/sqlgate/routes", "/etc/sqlgate/policy"} {
			if !strings.Contains(config, mount) {
				t.Fatalf("the rendered configuration does not use %s:\n%s", mount, config)
			}
			config = strings.ReplaceAll(config, mount, filepath.Join(root, mount))
		}
		// The example's sink: in a pod, a volume from extraVolumes; here, a
		// directory that can be created.
		config = strings.ReplaceAll(config, "/mnt/worm/", filepath.Join(root, "/mnt/worm")+"/")
		// The Secrets (secretMounts, tls) as the pod mounts them, read-only:
		// the example's audit.paramKeyFile is there, so the Secret holds it
		// (serve could not create it). The volume claim at /var/lib/sqlgate,
		// where serve creates the signing key.
		config = exampleSecrets(t, filepath.Join(root, "/etc/sqlgate")).Replace(config)
		writeFile(t, filepath.Join(root, "/etc/sqlgate/secrets/audit-param.key"), "placeholder parameter key\n", 0o440)
		if err := os.MkdirAll(filepath.Join(root, "/var/lib/sqlgate"), 0o700); err != nil {
			t.Fatal(err)
		}
		config = strings.ReplaceAll(config, "/var/lib/sqlgate/", filepath.Join(root, "/var/lib/sqlgate")+"/")
		writeConfigMapVolume(t, filepath.Join(root, "/etc/sqlgate/routes"), map[string]any{"routes.yaml": dig[string](t, cm, "data", "routes.yaml")})
		writeConfigMapVolume(t, filepath.Join(root, "/etc/sqlgate/policy"), dig[map[string]any](t, policy, "data"))
		file := filepath.Join(root, "sqlgated.yaml")
		if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := run(t.Context(), []string{"serve", "--config", file, "--check"}, &out, &out); err != nil {
			t.Fatalf("serve --check on the rendered configuration: %v\n%s\n%s", err, out.String(), config)
		}
		var c Config
		if err := yaml.Unmarshal([]byte(dig[string](t, cm, "data", "sqlgated.yaml")), &c); err != nil {
			t.Fatal(err)
		}
		if c.HTTP.MetricsListen != "0.0.0.0:9090" {
			t.Errorf("http.metricsListen %q, want /metrics on a port of its own, 0.0.0.0:9090", c.HTTP.MetricsListen)
		}
		if c.HTTP.Listen != "0.0.0.0:8443" || c.HTTP.TLSCertFile != "/etc/sqlgate/tls/tls.crt" ||
			!strings.HasPrefix(c.Audit.SigningKeyFile, "/var/lib/sqlgate/") || c.Instance != "" || c.Audit.Origin != "" {
			t.Errorf("the chart's keys: listen %q, tls %q, signing key %q, instance %q, origin %q",
				c.HTTP.Listen, c.HTTP.TLSCertFile, c.Audit.SigningKeyFile, c.Instance, c.Audit.Origin)
		}
		// The origins earlier chart versions wrote, sqlgate/<pod name>.
		if c.Audit.OriginPrefix != "sqlgate" {
			t.Errorf("default audit.originPrefix %q, want sqlgate", c.Audit.OriginPrefix)
		}
	})

	// Two releases of one name sharing a control database tell their
	// origins apart by auditOriginPrefix: <prefix>/<pod name>.
	t.Run("audit origin prefix", func(t *testing.T) {
		values := chartValues(t)
		values["auditOriginPrefix"] = "eu-prod"
		objs, err := helmTemplate(t, helm, values)
		if err != nil {
			t.Fatal(err)
		}
		text := dig[string](t, objs["ConfigMap/prod-sqlgate"], "data", "sqlgated.yaml")
		text = strings.NewReplacer("routes: /etc/sqlgate/routes/routes.yaml", "routes: ../../deploy/examples/routes.yaml").Replace(text)
		cfg, err := decodeConfig([]byte("instance: prod-sqlgate-0\n" + text))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Audit.Origin != "eu-prod/prod-sqlgate-0" {
			t.Errorf("pod prod-sqlgate-0 with auditOriginPrefix eu-prod writes origin %q", cfg.Audit.Origin)
		}
	})

	t.Run("pod", func(t *testing.T) {
		daemon := dig[map[string]any](t, pod, "containers", 0)
		check := dig[map[string]any](t, pod, "initContainers", 0)
		args := strs(t, daemon, "args")
		if !slices.Equal(args, []string{"serve", "--config", "/etc/sqlgate/config/sqlgated.yaml"}) ||
			!slices.Equal(strs(t, check, "args"), append(args, "--check")) {
			t.Errorf("daemon args %q, check args %q", args, strs(t, check, "args"))
		}
		if dig[string](t, daemon, "image") != "ghcr.io/sqlgate/sqlgated:0.1.0" || dig[string](t, check, "image") != dig[string](t, daemon, "image") {
			t.Errorf("images %q and %q", dig[string](t, daemon, "image"), dig[string](t, check, "image"))
		}
		if !dig[bool](t, pod, "securityContext", "runAsNonRoot") || dig[int](t, pod, "securityContext", "runAsUser") != 65532 ||
			dig[string](t, pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" || dig[bool](t, pod, "automountServiceAccountToken") {
			t.Errorf("pod security context %v", pod["securityContext"])
		}
		for _, c := range []map[string]any{daemon, check} {
			if dig[bool](t, c, "securityContext", "allowPrivilegeEscalation") || !dig[bool](t, c, "securityContext", "readOnlyRootFilesystem") ||
				!slices.Equal(strs(t, c, "securityContext", "capabilities", "drop"), []string{"ALL"}) {
				t.Errorf("%s: security context %v", c["name"], c["securityContext"])
			}
			// Every mount has a volume.
			volumes := map[string]bool{"state": true} // the volume claim template
			for _, v := range dig[[]any](t, pod, "volumes") {
				volumes[dig[string](t, v, "name")] = true
			}
			for _, m := range dig[[]any](t, c, "volumeMounts") {
				if !volumes[dig[string](t, m, "name")] {
					t.Errorf("%s mounts %s, which is no volume", c["name"], dig[string](t, m, "name"))
				}
			}
		}
		if dig[int](t, daemon, "ports", 0, "containerPort") != 8443 || dig[int](t, objs["Service/prod-sqlgate"], "spec", "ports", 0, "port") != 8443 {
			t.Error("the container and the service disagree on the port")
		}
		if dig[string](t, daemon, "ports", 1, "name") != "metrics" || dig[int](t, daemon, "ports", 1, "containerPort") != 9090 {
			t.Errorf("container ports %v, want metrics on 9090 besides http", daemon["ports"])
		}
		for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
			if dig[string](t, daemon, probe, "httpGet", "path") != want || dig[string](t, daemon, probe, "httpGet", "scheme") != "HTTPS" {
				t.Errorf("%s = %v, want %s over HTTPS (tls is on)", probe, daemon[probe], want)
			}
		}
		if dig[int](t, pod, "terminationGracePeriodSeconds") < 60 {
			t.Error("the grace period leaves no room to drain")
		}
		// A namespace with a ResourceQuota refuses a pod any of whose
		// containers, init containers included, lacks requests or a memory
		// limit.
		for _, list := range []string{"initContainers", "containers"} {
			for _, c := range dig[[]any](t, pod, list) {
				res, _ := c.(map[string]any)["resources"].(map[string]any)
				requests, _ := res["requests"].(map[string]any)
				limits, _ := res["limits"].(map[string]any)
				if requests["cpu"] == nil || requests["memory"] == nil || limits["memory"] == nil {
					t.Errorf("%s %s: resources %v, want cpu and memory requests and a memory limit", list, dig[string](t, c, "name"), res)
				}
			}
		}
		// serve --check (the init container) compares a stop's worst case
		// with the grace period; the daemon's API serves on for the
		// shutdown delay.
		grace := fmt.Sprintf("%ds", dig[int](t, pod, "terminationGracePeriodSeconds"))
		for _, c := range []map[string]any{daemon, check} {
			var budget string
			for _, e := range dig[[]any](t, c, "env") {
				if dig[string](t, e, "name") == stopBudgetEnv {
					budget = dig[string](t, e, "value")
				}
			}
			if budget != grace {
				t.Errorf("%s: %s = %q, want the grace period, %s", c["name"], stopBudgetEnv, budget, grace)
			}
		}
		var c Config
		if err := yaml.Unmarshal([]byte(dig[string](t, objs["ConfigMap/prod-sqlgate"], "data", "sqlgated.yaml")), &c); err != nil {
			t.Fatal(err)
		}
		if c.HTTP.ShutdownDelay != 5*time.Second {
			t.Errorf("http.shutdownDelay %s, want the default 5s: the API's listener would close while the Service still sends to the pod", c.HTTP.ShutdownDelay)
		}
		if dig[int](t, objs["PodDisruptionBudget/prod-sqlgate"], "spec", "maxUnavailable") != 1 {
			t.Error("no disruption budget")
		}
	})

	// bin/helm (make bin/helm) defaults to a Kubernetes the chart's
	// kubeVersion accepts: `helm template` without --kube-version works.
	t.Run("default_kube_version", func(t *testing.T) {
		if out, err := exec.CommandContext(t.Context(), helm, "template", "prod", chartDir, "-f", valuesFile(t, values)).CombinedOutput(); err != nil {
			t.Errorf("helm template without --kube-version: %v\n%.2000s", err, out)
		}
	})

	t.Run("lint", func(t *testing.T) {
		if out, err := exec.CommandContext(t.Context(), helm, "lint", "--strict", "--kube-version", "1.31.0", chartDir, "-f", valuesFile(t, values)).CombinedOutput(); err != nil {
			t.Errorf("helm lint --strict: %v\n%s", err, out)
		}
	})

	// Off by default; when on, the NetworkPolicy admits exactly the listed
	// peers to the one port, and the ServiceMonitor scrapes over HTTPS with
	// the TLS settings it is given (Prometheus scrapes pod IPs: without a CA
	// and a server name it cannot check sqlgated's certificate).
	t.Run("network_policy_and_service_monitor", func(t *testing.T) {
		for _, kind := range []string{"NetworkPolicy/prod-sqlgate", "ServiceMonitor/prod-sqlgate"} {
			if _, ok := objs[kind]; ok {
				t.Errorf("%s is rendered by default", kind)
			}
		}
		values := chartValues(t)
		ingressNS := map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "ingress-nginx"}}}
		prometheus := map[string]any{
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}},
			"podSelector":       map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "prometheus"}},
		}
		tlsConfig := map[string]any{"serverName": "sqlgate.example.com", "ca": map[string]any{"secret": map[string]any{"name": "sqlgate-ca", "key": "ca.crt"}}}
		values["networkPolicy"] = map[string]any{
			"enabled": true,
			"api":     map[string]any{"from": []any{ingressNS}},
			"metrics": map[string]any{"from": []any{prometheus}},
		}
		values["serviceMonitor"] = map[string]any{"enabled": true, "tlsConfig": tlsConfig}
		on, err := helmTemplate(t, helm, values)
		if err != nil {
			t.Fatal(err)
		}
		np, ok := on["NetworkPolicy/prod-sqlgate"]
		if !ok {
			t.Fatal("networkPolicy.enabled renders no NetworkPolicy")
		}
		if got := dig[map[string]any](t, np, "spec", "podSelector", "matchLabels"); got["app.kubernetes.io/instance"] != "prod" || got["app.kubernetes.io/name"] != "sqlgate" {
			t.Errorf("NetworkPolicy selects %v, want the release's pods", got)
		}
		if got := strs(t, np, "spec", "policyTypes"); !slices.Equal(got, []string{"Ingress"}) {
			t.Errorf("policyTypes %q, want [Ingress] (egress to NATS, databases and IdPs stays open)", got)
		}
		rules := dig[[]any](t, np, "spec", "ingress")
		if len(rules) != 2 {
			t.Fatalf("ingress rules %v, want one for the API and one for metrics", rules)
		}
		// The API's peers reach the API's port, Prometheus the metrics port.
		for i, want := range []struct {
			peer map[string]any
			port string
		}{{ingressNS, "http"}, {prometheus, "metrics"}} {
			if from := dig[[]any](t, rules[i], "from"); len(from) != 1 || fmt.Sprint(from[0]) != fmt.Sprint(want.peer) {
				t.Errorf("rule %d admits %v, want %v", i, from, want.peer)
			}
			if port := dig[any](t, rules[i], "ports", 0, "port"); port != want.port {
				t.Errorf("rule %d opens port %v, want the container's %s port", i, port, want.port)
			}
		}
		monitor := on["ServiceMonitor/prod-sqlgate"]
		endpoint := dig[map[string]any](t, monitor, "spec", "endpoints", 0)
		if endpoint["scheme"] != "https" || fmt.Sprint(endpoint["tlsConfig"]) != fmt.Sprint(tlsConfig) || endpoint["port"] != "metrics" {
			t.Errorf("ServiceMonitor endpoint %v, want the metrics port over https with tlsConfig %v", endpoint, tlsConfig)
		}
		// The port is named on the headless Service only: the API's Service
		// (perhaps a LoadBalancer) does not carry /metrics.
		if got := dig[string](t, monitor, "spec", "selector", "matchLabels", "app.kubernetes.io/component"); got != "pods" {
			t.Errorf("ServiceMonitor selects the %q Service, want the headless pods Service", got)
		}
		lint := func(values map[string]any) {
			t.Helper()
			if out, err := exec.CommandContext(t.Context(), helm, "lint", "--strict", "--kube-version", "1.31.0", chartDir, "-f", valuesFile(t, values)).CombinedOutput(); err != nil {
				t.Errorf("helm lint --strict with the NetworkPolicy and ServiceMonitor: %v\n%s", err, out)
			}
		}
		lint(values)
		// Enabled with no peer: every ingress refused, not every ingress allowed.
		values["networkPolicy"] = map[string]any{"enabled": true}
		closed, err := helmTemplate(t, helm, values)
		if err != nil {
			t.Fatal(err)
		}
		if rules, ok := dig[map[string]any](t, closed["NetworkPolicy/prod-sqlgate"], "spec")["ingress"].([]any); !ok || len(rules) != 0 {
			t.Errorf("NetworkPolicy without peers: ingress %v, want [] (nothing admitted)", rules)
		}
		lint(values)
	})

	// metrics.port 0: /metrics on the API's port, as before, and everything
	// that scrapes or admits it points there; no metrics port anywhere.
	t.Run("metrics_on_the_api_port", func(t *testing.T) {
		values := chartValues(t)
		values["metrics"] = map[string]any{"port": 0}
		values["networkPolicy"] = map[string]any{"enabled": true, "metrics": map[string]any{"from": []any{map[string]any{"podSelector": map[string]any{}}}}}
		values["serviceMonitor"] = map[string]any{"enabled": true}
		objs, err := helmTemplate(t, helm, values)
		if err != nil {
			t.Fatal(err)
		}
		var c Config
		if err := yaml.Unmarshal([]byte(dig[string](t, objs["ConfigMap/prod-sqlgate"], "data", "sqlgated.yaml")), &c); err != nil {
			t.Fatal(err)
		}
		if c.HTTP.MetricsListen != "" {
			t.Errorf("metrics.port 0 sets http.metricsListen %q", c.HTTP.MetricsListen)
		}
		monitor := objs["ServiceMonitor/prod-sqlgate"]
		if dig[string](t, monitor, "spec", "endpoints", 0, "port") != "http" || dig[string](t, monitor, "spec", "selector", "matchLabels", "app.kubernetes.io/component") != "api" {
			t.Errorf("ServiceMonitor %v, want the http port of the API's Service", dig[map[string]any](t, monitor, "spec"))
		}
		if port := dig[any](t, objs["NetworkPolicy/prod-sqlgate"], "spec", "ingress", 0, "ports", 0, "port"); port != "http" {
			t.Errorf("metrics peers admitted to port %v, want http", port)
		}
		for _, name := range []string{"StatefulSet/prod-sqlgate", "Service/prod-sqlgate-pods"} {
			if out, _ := yaml.Marshal(objs[name]); strings.Contains(string(out), "metrics") {
				t.Errorf("%s names a metrics port:\n%s", name, out)
			}
		}
	})

	t.Run("policy changes reload and catalog changes roll", func(t *testing.T) {
		sum := func(objs map[string]map[string]any) string {
			return dig[string](t, objs["StatefulSet/prod-sqlgate"], "spec", "template", "metadata", "annotations", "checksum/config")
		}
		before := sum(objs)
		values := chartValues(t)
		values["policy"].(map[string]any)["files"].(map[string]any)["extra.rego"] = "package sqlgate.extra\n"
		after, err := helmTemplate(t, helm, values)
		if err != nil {
			t.Fatal(err)
		}
		if sum(after) != before {
			t.Error("a policy change rolls the pods; sqlgated reloads the policy in place")
		}
		values["routes"] = values["routes"].(string) + "\n"
		after, err = helmTemplate(t, helm, values)
		if err != nil {
			t.Fatal(err)
		}
		if sum(after) == before {
			t.Error("a catalog change does not roll the pods; sqlgated reads it only at start")
		}
	})

	t.Run("refused values", func(t *testing.T) {
		for name, c := range map[string]struct {
			edit func(v map[string]any)
			want string
		}{
			"two replicas on sqlite": {func(v map[string]any) {
				v["config"].(map[string]any)["control"] = map[string]any{"dialect": "sqlite"}
			}, "shared control database"},
			"two replicas, default control": {func(v map[string]any) { delete(v["config"].(map[string]any), "control") }, "shared control database"},
			"routes in config":              {func(v map[string]any) { v["config"].(map[string]any)["routes"] = "/x" }, "config.routes is set by the chart"},
			"signing key": {func(v map[string]any) {
				v["config"].(map[string]any)["audit"].(map[string]any)["signingKeyFile"] = "/x"
			}, "each pod keeps its own key"},
			"origin": {func(v map[string]any) { v["config"].(map[string]any)["audit"].(map[string]any)["origin"] = "x" }, "config.audit.origin"},
			"origin prefix in config": {func(v map[string]any) {
				v["config"].(map[string]any)["audit"].(map[string]any)["originPrefix"] = "x"
			}, "config.audit.originPrefix is set by the chart: use .Values.auditOriginPrefix"},
			"bad origin prefix": {func(v map[string]any) { v["auditOriginPrefix"] = "eu prod+1" }, `auditOriginPrefix "eu prod+1" must be`},
			"listen":            {func(v map[string]any) { v["config"].(map[string]any)["http"].(map[string]any)["listen"] = ":1" }, "config.http.listen"},
			"no policy":         {func(v map[string]any) { v["policy"] = map[string]any{} }, "policy.existingConfigMap"},
			"metricsListen": {func(v map[string]any) {
				v["config"].(map[string]any)["http"].(map[string]any)["metricsListen"] = ":9191"
			}, "config.http.metricsListen is set by the chart: use .Values.metrics.port"},
			"shutdownDelay in config": {func(v map[string]any) {
				v["config"].(map[string]any)["http"].(map[string]any)["shutdownDelay"] = "1s"
			}, "config.http.shutdownDelay is set by the chart: use .Values.shutdownDelay"},
			"metrics on the API's port": {func(v map[string]any) { v["metrics"] = map[string]any{"port": 8443} }, "metrics.port 8443 must differ from service.port"},
			"metrics port out of range": {func(v map[string]any) { v["metrics"] = map[string]any{"port": 70000} }, "metrics.port 70000 must be a port number"},
			"nested policy file": {func(v map[string]any) {
				v["policy"].(map[string]any)["files"].(map[string]any)["lib/x.rego"] = "package x"
			}, "flat"},
			"no catalog": {func(v map[string]any) { v["routes"] = "" }, "route catalog"},
			// The SQLite control database holds the whole audit log: the
			// 64Mi that holds the keys fills after some 16,000 calls.
			"one replica on SQLite without a volume size": {func(v map[string]any) {
				v["replicaCount"] = 1
				delete(v["config"].(map[string]any), "control")
			}, "persistence.size is required with a SQLite control database on the pod's volume"},
			"one replica on SQLite under /var/lib/sqlgate without a volume size": {func(v map[string]any) {
				v["replicaCount"] = 1
				v["config"].(map[string]any)["control"] = map[string]any{"dialect": "sqlite", "path": "/var/lib/sqlgate/db/control.db"}
			}, "persistence.size is required"},
			// Every mistake at once, not the first.
			"nothing": {func(v map[string]any) { clear(v) }, "route catalog) is required\n  - set .Values.policy.existingConfigMap"},
		} {
			v := chartValues(t)
			c.edit(v)
			if _, err := helmTemplate(t, helm, v); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: err = %v, want one saying %q", name, err, c.want)
			}
		}
		// One replica may keep a SQLite control database on its volume, of
		// the size it is given.
		v := chartValues(t)
		v["replicaCount"] = 1
		v["persistence"] = map[string]any{"size": "8Gi"}
		delete(v["config"].(map[string]any), "control")
		objs, err := helmTemplate(t, helm, v)
		if err != nil {
			t.Fatal(err)
		}
		var c Config
		if err := yaml.Unmarshal([]byte(dig[string](t, objs["ConfigMap/prod-sqlgate"], "data", "sqlgated.yaml")), &c); err != nil {
			t.Fatal(err)
		}
		if c.Control.Dialect != "sqlite" || !strings.HasPrefix(c.Control.Path, "/var/lib/sqlgate/") {
			t.Errorf("one replica's control database: %+v, want SQLite on the pod's volume", c.Control)
		}
		if got := volumeSize(t, objs); got != "8Gi" {
			t.Errorf("persistence.size 8Gi: the volume claim requests %q", got)
		}
		if _, ok := objs["PodDisruptionBudget/prod-sqlgate"]; ok {
			t.Error("a disruption budget for one replica blocks node drains")
		}
		// A SQLite database on another volume leaves the pod's volume to the keys.
		v = chartValues(t)
		v["replicaCount"] = 1
		v["config"].(map[string]any)["control"] = map[string]any{"dialect": "sqlite", "path": "/mnt/control/control.db"}
		if objs, err = helmTemplate(t, helm, v); err != nil {
			t.Fatalf("one replica with SQLite off the pod's volume: %v", err)
		}
		if got := volumeSize(t, objs); got != "64Mi" {
			t.Errorf("SQLite off the pod's volume: the volume claim requests %q, want the keys' 64Mi", got)
		}
	})

	// A shared control database: the pod's volume holds its keys only.
	t.Run("volume size", func(t *testing.T) {
		if got := volumeSize(t, objs); got != "64Mi" {
			t.Errorf("with a shared control database the volume claim requests %q, want 64Mi", got)
		}
	})
}

// TestHelmChartPod runs the pod the chart renders in a real container
// engine (podman; see podmantest) against a nats-server running the
// nats-setup output and an external OpenID provider. The rendered pod spec
// is followed as a kubelet would: ConfigMap volumes laid out with ..data
// links, the Secret with the NATS seeds read-only at its defaultMode and
// group fsGroup, the volume claim as a directory owned by fsGroup, the
// user, the read-only root, the dropped capabilities, the init container
// before the daemon, the readiness probe. Then alice signs in, gets a NATS
// credential and creates an order through the pod; a stop exits 0; a
// restart keeps the pod's audit signing key.
func TestHelmChartPod(t *testing.T) {
	helm := helmBinary(t)
	engine, archive := podmantest.New(t)
	ref := engine.Load(t, archive)
	i := strings.LastIndex(ref, ":")
	if i < strings.LastIndex(ref, "/") {
		t.Fatalf("image reference %q has no tag", ref)
	}
	repo, tag := ref[:i], ref[i+1:]
	deps := startServeDeps(t.Context(), t, demoRoutes, "", nil)
	port := strconv.Itoa(testnet.FreePort(t))
	values := map[string]any{
		"replicaCount": 1,
		"persistence":  map[string]any{"size": "1Gi"}, // the SQLite control database, on the pod's volume
		"image":        map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"},
		"service":      map[string]any{"port": atoi(t, port)},
		"routes":       string(demoRoutes),
		"policy":       map[string]any{"files": flatPolicy(t)},
		"secretMounts": []any{map[string]any{"name": "nats-keys", "secretName": "sqlgate-nats", "mountPath": "/etc/sqlgate/nats"}},
		"config": map[string]any{
			"http": map[string]any{"auditorGroups": []any{"auditors"}},
			"nats": map[string]any{"url": "nats://" + deps.natsAddr, "keysDir": "/etc/sqlgate/nats"},
			"identity": map[string]any{
				"issuers": []any{map[string]any{"name": "dev", "issuer": deps.idp.Issuer(), "audiences": []any{"sqlgate", "sqlgate-cli"}}},
				"cli":     map[string]any{"issuer": deps.idp.Issuer(), "clientID": "sqlgate-cli"},
			},
			"databases": []any{map[string]any{"sqlite": map[string]any{"name": "orders", "path": "/var/lib/sqlgate/orders.db"}}},
		},
	}
	objs, err := helmTemplate(t, helm, values)
	if err != nil {
		t.Fatal(err)
	}
	pod := dig[map[string]any](t, objs["StatefulSet/prod-sqlgate"], "spec", "template", "spec")
	fsGroup := dig[int](t, pod, "securityContext", "fsGroup")

	// The volumes, as the kubelet would provide them.
	root := t.TempDir()
	host := map[string]string{} // volume name -> host directory; "" for a memory emptyDir
	for _, v := range dig[[]any](t, pod, "volumes") {
		name := dig[string](t, v, "name")
		dir := filepath.Join(root, name)
		vm := v.(map[string]any)
		switch {
		case vm["configMap"] != nil:
			data := dig[map[string]any](t, objs["ConfigMap/"+dig[string](t, vm, "configMap", "name")], "data")
			if items, ok := vm["configMap"].(map[string]any)["items"].([]any); ok {
				picked := map[string]any{}
				for _, it := range items {
					picked[dig[string](t, it, "path")] = data[dig[string](t, it, "key")]
				}
				data = picked
			}
			writeConfigMapVolume(t, dir, data)
		case vm["secret"] != nil:
			if dig[string](t, vm, "secret", "secretName") != "sqlgate-nats" {
				t.Fatalf("unexpected secret volume %v", vm)
			}
			mode := os.FileMode(dig[int](t, vm, "secret", "defaultMode"))
			if err := os.CopyFS(dir, os.DirFS(filepath.Join(deps.dir, "keys"))); err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				p := filepath.Join(dir, e.Name())
				if err := errors.Join(os.Chmod(p, mode), os.Chown(p, 0, fsGroup)); err != nil {
					t.Fatal(err)
				}
			}
		case vm["emptyDir"] != nil:
			dir = ""
		default:
			t.Fatalf("volume %s: a kind this test does not provide", name)
		}
		host[name] = dir
	}
	// The volume claim: a directory the pod's group owns, holding the
	// demo orders database the configuration names.
	state := filepath.Join(root, "state")
	if err := os.Mkdir(state, 0o2770); err != nil {
		t.Fatal(err)
	}
	if err := createDemoDB(t.Context(), filepath.Join(state, "orders.db")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{state, filepath.Join(state, "orders.db")} {
		if err := os.Chown(p, 0, fsGroup); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(os.Chmod(state, 0o2770), os.Chmod(filepath.Join(state, "orders.db"), 0o660)); err != nil {
		t.Fatal(err)
	}
	host["state"] = state

	// podman run options for a container of the pod spec.
	runArgs := func(c map[string]any, name string) []string {
		args := append([]string{"run", "--name", name}, engine.RunArgs()...)
		sc := dig[map[string]any](t, pod, "securityContext")
		args = append(args, "--user", fmt.Sprintf("%d:%d", dig[int](t, sc, "runAsUser"), dig[int](t, sc, "runAsGroup")), "--group-add", fmt.Sprint(fsGroup))
		if dig[bool](t, c, "securityContext", "readOnlyRootFilesystem") {
			args = append(args, "--read-only")
		}
		for _, capability := range strs(t, c, "securityContext", "capabilities", "drop") {
			args = append(args, "--cap-drop", capability)
		}
		if !dig[bool](t, c, "securityContext", "allowPrivilegeEscalation") {
			args = append(args, "--security-opt", "no-new-privileges")
		}
		for _, m := range dig[[]any](t, c, "volumeMounts") {
			dir, mount := host[dig[string](t, m, "name")], dig[string](t, m, "mountPath")
			if dir == "" {
				args = append(args, "--tmpfs", mount+":rw,mode=1777,size=16m")
				continue
			}
			opt := dir + ":" + mount
			if ro, _ := m.(map[string]any)["readOnly"].(bool); ro {
				opt += ":ro"
			}
			args = append(args, "-v", opt)
		}
		return append(append(args, dig[string](t, c, "image")), strs(t, c, "args")...)
	}
	name := fmt.Sprintf("sqlgate-chart-test-%d", os.Getpid())
	engine.Remove(t, name+"-check")
	if out, err := engine.Podman(t, "", runArgs(dig[map[string]any](t, pod, "initContainers", 0), name+"-check")...); err != nil {
		t.Fatalf("the init container (serve --check) failed: %v\n%s", err, out)
	}
	daemon := dig[map[string]any](t, pod, "containers", 0)
	run := runArgs(daemon, name)
	run = append([]string{run[0], "-d"}, run[1:]...)
	engine.Remove(t, name)
	if _, err := engine.Podman(t, "", run...); err != nil {
		t.Fatal(err)
	}
	probe := dig[map[string]any](t, daemon, "readinessProbe", "httpGet")
	base := "http://127.0.0.1:" + port
	if dig[string](t, probe, "scheme") != "HTTP" || dig[string](t, probe, "port") != "http" || dig[int](t, daemon, "ports", 0, "containerPort") != atoi(t, port) {
		t.Fatalf("readiness probe %v on ports %v", probe, daemon["ports"])
	}
	ready := func() { engine.WaitReady(t, name, base+dig[string](t, probe, "path"), 90*time.Second) }
	ready()

	users := deps.userStack(base)
	alice, _ := users.login(t, "alice")
	nc, _, _ := users.natsUser(t, alice, 0)
	if env, _ := request(t, nc, "orders.v1.create", `{"customer":"pod","amount":7}`, nil); !env.OK {
		t.Fatalf("create through the pod: %+v", env)
	}
	nc.Close()

	keyFile := filepath.Join(state, "keys", "audit-signing.key")
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("the pod's signing key is not on its volume: %v", err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("signing key mode: %v %v", fi.Mode(), err)
	}
	stop := func() {
		t.Helper()
		if _, err := engine.Podman(t, "", "stop", "-t", strconv.Itoa(dig[int](t, pod, "terminationGracePeriodSeconds")), name); err != nil {
			t.Fatal(err)
		}
		if code, err := engine.Podman(t, "", "inspect", "--format", "{{.State.ExitCode}}", name); err != nil || strings.TrimSpace(code) != "0" {
			t.Errorf("exit code after stop: %q %v", code, err)
		}
	}
	stop()
	// A restart (a rescheduled pod with its claim) keeps the key.
	if _, err := engine.Podman(t, "", "start", name); err != nil {
		t.Fatal(err)
	}
	ready()
	if again, err := os.ReadFile(keyFile); err != nil || !bytes.Equal(again, key) {
		t.Errorf("the signing key changed across a restart: %v", err)
	}
	stop()
}

// TestPolicyConfigMapCommand runs the command docs/operations.md gives for
// the policy ConfigMap ("The policy ConfigMap") on a copy of the default
// library, with kubectl left out: it flattens the nested library into the
// files TestHelmChart deploys (flatPolicy), which pass the policy check,
// and it stops at what flattening would change: a data file below the top
// (its directory is its place in data) or two files of one name.
func TestPolicyConfigMapCommand(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var script []string
	for line := range strings.Lines(string(doc)) {
		if len(script) == 0 && !strings.HasPrefix(line, "rm -rf policy-flat") {
			continue
		}
		script = append(script, line)
		if strings.Contains(line, "kubectl apply") {
			break
		}
	}
	if len(script) == 0 || !strings.Contains(script[len(script)-1], "kubectl apply") {
		t.Fatal(`docs/operations.md has no command from "rm -rf policy-flat" to "kubectl apply"`)
	}
	// flatten runs the command in a directory holding a copy of the default
	// library as policy/, plus extra files, and returns the directory and
	// the command's error output.
	flatten := func(t *testing.T, extra map[string]string) (string, string, error) {
		t.Helper()
		dir := t.TempDir()
		if err := os.CopyFS(filepath.Join(dir, "policy"), rules.FS); err != nil {
			t.Fatal(err)
		}
		for name, body := range extra {
			p := filepath.Join(dir, "policy", filepath.FromSlash(name))
			if err := errors.Join(os.MkdirAll(filepath.Dir(p), 0o755), os.WriteFile(p, []byte(body), 0o644)); err != nil {
				t.Fatal(err)
			}
		}
		var stderr strings.Builder
		cmd := exec.CommandContext(t.Context(), bash, "-c", "kubectl() { :; }\n"+strings.Join(script, ""))
		cmd.Dir, cmd.Stderr = dir, &stderr
		err := cmd.Run()
		return dir, stderr.String(), err
	}

	// What `kubectl create configmap --from-file=policy/` takes: the files
	// at the top, which hold no entry point.
	top := t.TempDir()
	entries, err := fs.ReadDir(rules.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			b, err := fs.ReadFile(rules.FS, e.Name())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(top, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if errs := opa.Check(t.Context(), top, nil); !strings.Contains(fmt.Sprint(errs), "no entry point") {
		t.Errorf("the library's top directory alone: %v, want no entry point", errs)
	}

	// The default library, with a CI file in a dot directory (skipped, as
	// sqlgated skips it).
	dir, stderr, err := flatten(t, map[string]string{".github/workflows/ci.yml": "on: push\n"})
	if err != nil {
		t.Fatalf("the command on the default library: %v\n%s", err, stderr)
	}
	flat := filepath.Join(dir, "policy-flat")
	got := map[string]any{}
	entries, err = os.ReadDir(flat)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(flat, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = string(b)
	}
	if want := flatPolicy(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("policy-flat holds %q, want the flat library %q", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	if errs := opa.Check(t.Context(), flat, nil); errs != nil {
		t.Errorf("the flattened library does not pass the policy check: %v", errs)
	}

	for name, c := range map[string]struct {
		extra map[string]string
		want  string
	}{
		"data file below the top": {map[string]string{"sqlgate/lib/extra.yaml": "x: 1\n"}, "./sqlgate/lib/extra.yaml: a data file below the top directory"},
		"two modules of one name": {map[string]string{"sqlgate/lib/call.rego": "package sqlgate.lib.call\n"}, "a second file named call.rego"},
	} {
		if _, stderr, err := flatten(t, c.extra); err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: err %v, stderr %q, want a failure saying %q", name, err, stderr, c.want)
		}
	}
}

// volumeSize returns the storage the StatefulSet's volume claim template
// requests.
func volumeSize(t *testing.T, objs map[string]map[string]any) string {
	t.Helper()
	return dig[string](t, objs["StatefulSet/prod-sqlgate"], "spec", "volumeClaimTemplates", 0, "spec", "resources", "requests", "storage")
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
