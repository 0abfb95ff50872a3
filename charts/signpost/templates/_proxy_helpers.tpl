{{/* Name of the `signpost proxy` objects: <fullname>-proxy, at most 63 characters. */}}
{{- define "signpost.proxy.fullname" -}}
{{- printf "%s-proxy" (include "signpost.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/*
Labels that select the proxy pods. The name differs from the controller's (signpost-proxy), so
the controller's Service, PodDisruptionBudget and anti-affinity never select proxy pods.
*/}}
{{- define "signpost.proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-proxy" (include "signpost.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels every proxy object carries. */}}
{{- define "signpost.proxy.labels" -}}
helm.sh/chart: {{ include "signpost.chart" . }}
{{ include "signpost.proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ include "signpost.version" . | quote }}
app.kubernetes.io/component: proxy
app.kubernetes.io/part-of: signpost
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount `signpost proxy` runs as: its own, so it holds only its own rights. */}}
{{- define "signpost.proxy.serviceAccountName" -}}
{{- if .Values.proxy.serviceAccount.create }}
{{- default (include "signpost.proxy.fullname" .) .Values.proxy.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.proxy.serviceAccount.name }}
{{- end }}
{{- end }}
