{{/* Name of the chart, overridable. */}}
{{- define "stickycanary.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already holds the chart name. */}}
{{- define "stickycanary.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "stickycanary.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stickycanary.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stickycanary.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "stickycanary.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "stickycanary.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stickycanary.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stickycanary.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
RBAC, least privilege. The rules live in files/rbac.yaml (plain YAML, with the reason for each
rule): controller/tests/mock_api.rs checks every request the controller makes in its mocked-API
tests against that file, for both install modes, and that every rule there is used. Each
define below renders one list of it; keep them one line each (tests/tests/manifests.rs checks).
*/}}
{{- define "stickycanary.rbac.rolloutRules" }}
{{ index (.Files.Get "files/rbac.yaml" | fromYaml) "rolloutRules" | toYaml }}
{{- end }}

{{- define "stickycanary.rbac.wasmPluginRules" }}
{{ index (.Files.Get "files/rbac.yaml" | fromYaml) "wasmPluginRules" | toYaml }}
{{- end }}

{{/* Leader election: only the Lease in the release namespace. */}}
{{- define "stickycanary.rbac.leaderElectionRules" }}
{{ index (.Files.Get "files/rbac.yaml" | fromYaml) "leaderElectionRules" | toYaml }}
{{- end }}
