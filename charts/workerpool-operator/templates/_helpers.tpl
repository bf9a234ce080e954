{{/* Chart name, truncated to a DNS label. */}}
{{- define "workerpool-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already holds the chart name. */}}
{{- define "workerpool-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "workerpool-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "workerpool-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "workerpool-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "workerpool-operator.labels" -}}
helm.sh/chart: {{ include "workerpool-operator.chart" . }}
{{ include "workerpool-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "workerpool-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "workerpool-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when leader election is on: forced, or more than one replica. */}}
{{- define "workerpool-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{- end }}
{{- end }}

{{- define "workerpool-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The permissions the operator needs wherever it watches WorkerPools. This list
must equal WATCH_RULES in src/controller/rbac.rs (the one place every API call
the operator makes is listed); tests/chart.rs renders the chart and fails
when they differ.
*/}}
{{- define "workerpool-operator.watchRules" -}}
# The pools: watched by the controller; status written by server-side apply.
- apiGroups: ["workerpool.dev"]
  resources: ["workerpools"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["workerpool.dev"]
  resources: ["workerpools/status"]
  verbs: ["get", "patch"]
# Scale targets: watched for their current replicas; scaled by one PATCH of /scale.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["get", "patch"]
# HPAs: watched so a pool never fights an HPA on the same target.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch"]
# Secrets named by triggers (Redis/Prometheus credentials): read by name only.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Pods of a target with spec.scaleIn: listed by the target's selector just
# before a scale-in (never watched); their pod-deletion-cost annotation patched.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "patch"]
# An Event for every scale and every new failure.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}
