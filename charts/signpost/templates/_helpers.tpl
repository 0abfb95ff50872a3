{{/* Chart name, overridable with nameOverride. */}}
{{- define "signpost.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, at most 63 characters (DNS label). If the release name already
contains the chart name it is used as is.
*/}}
{{- define "signpost.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "signpost.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "signpost.labels" -}}
helm.sh/chart: {{ include "signpost.chart" . }}
{{ include "signpost.selectorLabels" . }}
app.kubernetes.io/version: {{ include "signpost.version" . | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: signpost
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the controller pods; never change across upgrades. */}}
{{- define "signpost.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signpost.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The version label: the image tag (or appVersion), cut to a valid label value. */}}
{{- define "signpost.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | replace "+" "_" | replace "@" "_" | replace ":" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image reference: repository:tag, or repository@digest when a digest is given. */}}
{{- define "signpost.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the controller runs as. */}}
{{- define "signpost.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "signpost.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace holding the leader-election Lease (and the Role that grants it). */}}
{{- define "signpost.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/* Checks across values that the schema cannot express. */}}
{{- define "signpost.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without a Lease every replica would write" }}
{{- end }}
{{- if and .Values.clusterIPMode .Values.webhook.tls.secretName (not .Values.webhook.tls.caBundle) }}
{{- fail "webhook.tls.secretName needs webhook.tls.caBundle: the API server must trust the webhook's certificate" }}
{{- end }}
{{- if and .Values.webhook.tls.caBundle (not .Values.webhook.tls.secretName) }}
{{- fail "webhook.tls.caBundle is only used with webhook.tls.secretName (the generated certificate brings its own CA)" }}
{{- end }}
{{- end }}

{{/* ClusterIP mode: the webhook Service's name, and its DNS name (the certificate's SAN). */}}
{{- define "signpost.webhook.serviceName" -}}
{{- printf "%s-webhook" (include "signpost.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "signpost.webhook.dnsName" -}}
{{- printf "%s.%s.svc" (include "signpost.webhook.serviceName" .) .Release.Namespace }}
{{- end }}

{{/* The Secret the webhook's certificate and key come from. */}}
{{- define "signpost.webhook.secretName" -}}
{{- default (printf "%s-webhook-tls" (include "signpost.fullname" .)) .Values.webhook.tls.secretName }}
{{- end }}

{{/* Where the controller reads that Secret. */}}
{{- define "signpost.webhook.certDir" -}}
/etc/signpost/webhook
{{- end }}
