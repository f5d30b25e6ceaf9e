{{/* Names and labels shared by every template. */}}

{{- define "leadbridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one service's resources: <fullname>-<service> */}}
{{- define "leadbridge.serviceName" -}}
{{- printf "%s-%s" (include "leadbridge.fullname" .root) .service | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "leadbridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: leadbridge
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: leadbridge
{{- end -}}

{{/* Selector labels of one service; `root` is the chart context, `service` its name */}}
{{- define "leadbridge.selectorLabels" -}}
app.kubernetes.io/name: leadbridge
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{- define "leadbridge.secretName" -}}
{{- .Values.secrets.name | default (include "leadbridge.fullname" .) -}}
{{- end -}}

{{/* The Python module of a service: sla-watcher -> leadbridge_sla_watcher */}}
{{- define "leadbridge.envPrefix" -}}
{{- . | upper | replace "-" "_" -}}
{{- end -}}
