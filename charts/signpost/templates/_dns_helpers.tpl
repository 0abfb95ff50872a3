{{/* Name of the `signpost dns` objects: <fullname>-dns, at most 63 characters. */}}
{{- define "signpost.dns.fullname" -}}
{{- printf "%s-dns" (include "signpost.fullname" . | trunc 59 | trimSuffix "-") }}
{{- end }}

{{/*
Labels that select the DNS pods. The name differs from the controller's (signpost-dns), so the
controller's Service, PodDisruptionBudget and anti-affinity never select DNS pods.
*/}}
{{- define "signpost.dns.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-dns" (include "signpost.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels every DNS object carries. */}}
{{- define "signpost.dns.labels" -}}
helm.sh/chart: {{ include "signpost.chart" . }}
{{ include "signpost.dns.selectorLabels" . }}
app.kubernetes.io/version: {{ include "signpost.version" . | quote }}
app.kubernetes.io/component: dns
app.kubernetes.io/part-of: signpost
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount `signpost dns` runs as: its own, so it holds only its own rights. */}}
{{- define "signpost.dns.serviceAccountName" -}}
{{- if .Values.dns.serviceAccount.create }}
{{- default (include "signpost.dns.fullname" .) .Values.dns.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.dns.serviceAccount.name }}
{{- end }}
{{- end }}
