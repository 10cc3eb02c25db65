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
RBAC, least privilege. These blocks are plain YAML on purpose: tests/tests/manifests.rs
parses them and checks that together they are exactly this list, so keep template syntax out.
- canaryrollouts: read; canaryrollouts/status: patch (all controller state lives there)
- events: create, in both the core and the events.k8s.io API
- pods, deployments: read, for the canary health checks (OOMKilled, CrashLoopBackOff)
- wasmplugins: read, and patch the weight in spec.pluginConfig (never status, Istio owns it).
  Separate because the plugin often lives in another namespace (istio-system) than the rollout.
*/}}
{{- define "stickycanary.rbac.rolloutRules" }}
- apiGroups: ["stickycanary.dev"]
  resources: ["canaryrollouts"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["stickycanary.dev"]
  resources: ["canaryrollouts/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{- define "stickycanary.rbac.wasmPluginRules" }}
- apiGroups: ["extensions.istio.io"]
  resources: ["wasmplugins"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/* Leader election: only the Lease in the release namespace. */}}
{{- define "stickycanary.rbac.leaderElectionRules" }}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}
