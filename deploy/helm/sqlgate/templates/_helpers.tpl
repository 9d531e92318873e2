{{/* The name of the release's objects. */}}
{{- define "sqlgate.fullname" -}}
{{- if contains "sqlgate" .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-sqlgate" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sqlgate.selectorLabels" -}}
app.kubernetes.io/name: sqlgate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sqlgate.labels" -}}
{{ include "sqlgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sqlgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sqlgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sqlgate.policyConfigMap" -}}
{{- if .Values.policy.existingConfigMap -}}
{{- .Values.policy.existingConfigMap -}}
{{- else -}}
{{- printf "%s-policy" (include "sqlgate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the control database is SQLite on the pod's volume: config.control
left out, or dialect sqlite with its path (default /var/lib/sqlgate/control.db)
under /var/lib/sqlgate. The volume then holds the whole audit log.
*/}}
{{- define "sqlgate.sqliteOnVolume" -}}
{{- $control := get .Values.config "control" | default dict -}}
{{- if and (eq (get $control "dialect" | default "sqlite") "sqlite") (or (not (hasKey $control "path")) (hasPrefix "/var/lib/sqlgate/" (toString (get $control "path")))) -}}
true
{{- end -}}
{{- end -}}

{{/* The pod's volume size: persistence.size, or 64Mi for the keys alone. */}}
{{- define "sqlgate.volumeSize" -}}
{{- .Values.persistence.size | default "64Mi" -}}
{{- end -}}

{{- define "sqlgate.scheme" -}}
{{- if .Values.tls.secretName -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/*
The sqlgated configuration: the user's config with the keys the chart owns
filled in. A key the chart owns that the user set is an error, not a silent
override.
*/}}
{{- define "sqlgate.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $http := get $c "http" | default dict -}}
{{- $policy := get $c "policy" | default dict -}}
{{- $audit := get $c "audit" | default dict -}}
{{- $control := get $c "control" | default dict -}}
{{- $errs := list -}}
{{- if not .Values.routes }}{{ $errs = append $errs ".Values.routes (the route catalog) is required" }}{{ end -}}
{{- if and (not .Values.policy.existingConfigMap) (not .Values.policy.files) }}{{ $errs = append $errs "set .Values.policy.existingConfigMap or .Values.policy.files" }}{{ end -}}
{{- range $name, $_ := .Values.policy.files }}{{ if contains "/" $name }}{{ $errs = append $errs (printf "policy.files: %q: the policy directory is flat, use a file name without /" $name) }}{{ end }}{{ end -}}
{{- if hasKey $c "routes" }}{{ $errs = append $errs "config.routes is set by the chart: put the route catalog in .Values.routes" }}{{ end -}}
{{- if hasKey $c "instance" }}{{ $errs = append $errs "config.instance is set by the chart: each pod is an instance named after itself" }}{{ end -}}
{{- if hasKey $policy "dir" }}{{ $errs = append $errs "config.policy.dir is set by the chart: put the policy in .Values.policy" }}{{ end -}}
{{- range $k := list "listen" "tlsCertFile" "tlsKeyFile" }}{{ if hasKey $http $k }}{{ $errs = append $errs (printf "config.http.%s is set by the chart: use .Values.service.port and .Values.tls" $k) }}{{ end }}{{ end -}}
{{- if hasKey $http "shutdownDelay" }}{{ $errs = append $errs "config.http.shutdownDelay is set by the chart: use .Values.shutdownDelay" }}{{ end -}}
{{- if hasKey $http "metricsListen" }}{{ $errs = append $errs "config.http.metricsListen is set by the chart: use .Values.metrics.port" }}{{ end -}}
{{- $metricsPort := int (.Values.metrics | default dict).port -}}
{{- if or (lt $metricsPort 0) (gt $metricsPort 65535) }}{{ $errs = append $errs (printf "metrics.port %d must be a port number (0: /metrics on the API's port)" $metricsPort) }}{{ end -}}
{{- if eq $metricsPort (int .Values.service.port) }}{{ $errs = append $errs (printf "metrics.port %d must differ from service.port (0: /metrics on the API's port)" $metricsPort) }}{{ end -}}
{{- if hasKey $audit "signingKeyFile" }}{{ $errs = append $errs "config.audit.signingKeyFile is set by the chart: each pod keeps its own key on its volume" }}{{ end -}}
{{- if hasKey $audit "origin" }}{{ $errs = append $errs "config.audit.origin is set by the chart: each pod writes the origin <auditOriginPrefix>/<pod name>" }}{{ end -}}
{{- if hasKey $audit "originPrefix" }}{{ $errs = append $errs "config.audit.originPrefix is set by the chart: use .Values.auditOriginPrefix" }}{{ end -}}
{{- if not (regexMatch `^[^\s+]{1,200}$` (toString .Values.auditOriginPrefix)) }}{{ $errs = append $errs (printf "auditOriginPrefix %q must be 1 to 200 printable characters without spaces or +" (toString .Values.auditOriginPrefix)) }}{{ end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (has (get $control "dialect" | default "sqlite") (list "postgres" "sqlserver"))) -}}
{{- $errs = append $errs "replicaCount > 1 needs a shared control database: set config.control.dialect to postgres or sqlserver" -}}
{{- else if and (include "sqlgate.sqliteOnVolume" .) (not .Values.persistence.size) -}}
{{- $errs = append $errs "persistence.size is required with a SQLite control database on the pod's volume: it holds the whole audit log, about 4 KB per routed call, and a full volume refuses every call; size it for your audit.retention period (e.g. 8Gi for about 2 million calls; a release installed with the earlier 64Mi default: set 64Mi, then grow the claim as docs/operations.md says)" -}}
{{- end -}}
{{- if $errs }}{{ fail (printf "\n  - %s" (join "\n  - " $errs)) }}{{ end -}}
{{- $_ := set $c "routes" "/etc/sqlgate/routes/routes.yaml" -}}
{{- $_ := set $http "listen" (printf "0.0.0.0:%d" (int .Values.service.port)) -}}
{{- $_ := set $http "shutdownDelay" (toString .Values.shutdownDelay) -}}
{{- if $metricsPort }}{{ $_ := set $http "metricsListen" (printf "0.0.0.0:%d" $metricsPort) }}{{ end -}}
{{- if .Values.tls.secretName -}}
{{- $_ := set $http "tlsCertFile" "/etc/sqlgate/tls/tls.crt" -}}
{{- $_ := set $http "tlsKeyFile" "/etc/sqlgate/tls/tls.key" -}}
{{- end -}}
{{- $_ := set $c "http" $http -}}
{{- $_ := set $policy "dir" "/etc/sqlgate/policy" -}}
{{- $_ := set $c "policy" $policy -}}
{{- $_ := set $audit "signingKeyFile" "/var/lib/sqlgate/keys/audit-signing.key" -}}
{{- $_ := set $audit "originPrefix" (toString .Values.auditOriginPrefix) -}}
{{- if not (hasKey $audit "paramKeyFile") -}}
{{- $_ := set $audit "paramKeyFile" "/var/lib/sqlgate/keys/audit-param.key" -}}
{{- end -}}
{{- $_ := set $c "audit" $audit -}}
{{- if eq (get $control "dialect" | default "sqlite") "sqlite" -}}
{{- if not (hasKey $control "path") -}}
{{- $_ := set $control "dialect" "sqlite" -}}
{{- $_ := set $control "path" "/var/lib/sqlgate/control.db" -}}
{{- end -}}
{{- $_ := set $c "control" $control -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* What the check and the daemon containers share: environment, sandbox, mounts. */}}
{{- define "sqlgate.containerCommon" -}}
env:
  # What serve --check compares a stop's worst case with.
  - {name: SQLGATE_STOP_BUDGET, value: {{ printf "%ds" (int .Values.terminationGracePeriodSeconds) | quote }}}
  {{- with .Values.env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  privileged: false
  capabilities:
    drop: [ALL]
volumeMounts:
  - {name: config, mountPath: /etc/sqlgate/config, readOnly: true}
  - {name: routes, mountPath: /etc/sqlgate/routes, readOnly: true}
  - {name: policy, mountPath: /etc/sqlgate/policy, readOnly: true}
  - {name: state, mountPath: /var/lib/sqlgate}
  - {name: tmp, mountPath: /tmp}
  {{- if .Values.tls.secretName }}
  - {name: tls, mountPath: /etc/sqlgate/tls, readOnly: true}
  {{- end }}
  {{- range .Values.secretMounts }}
  - {name: {{ .name }}, mountPath: {{ .mountPath }}, readOnly: true}
  {{- end }}
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
The port /metrics is scraped on: "metrics" (its own, metrics.port), or "http"
when metrics.port is 0 (the API's).
*/}}
{{- define "sqlgate.metricsPortName" -}}
{{- if (.Values.metrics | default dict).port }}metrics{{ else }}http{{ end -}}
{{- end -}}
