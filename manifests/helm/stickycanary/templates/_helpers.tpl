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

{{/*
Names with a suffix. Every name here is at most 63 characters once its suffix is on, and
keeps the suffix: the full name is first cut to 63 minus the suffix, then the whole name gets
the usual `trunc 63 | trimSuffix "-"`. Cutting only the joined name would not do: with a
63-character full name, `<fullname>-leader-election` would come out as `<fullname>`, the
name of the watched-namespace Role, and the two Roles would collide when the release
namespace is the watched one. tests/tests/manifests.rs renders these with a 53-character
release name and checks every metadata.name.
*/}}
{{- define "stickycanary.metricsServiceName" -}}
{{- printf "%s-metrics" (include "stickycanary.fullname" . | trunc 55 | trimSuffix "-") | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stickycanary.wasmPluginRoleName" -}}
{{- printf "%s-wasmplugins" (include "stickycanary.fullname" . | trunc 51 | trimSuffix "-") | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stickycanary.leaderElectionName" -}}
{{- printf "%s-leader-election" (include "stickycanary.fullname" . | trunc 47 | trimSuffix "-") | trunc 63 | trimSuffix "-" }}
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
