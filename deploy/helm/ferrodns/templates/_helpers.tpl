{{- define "ferrodns.name" -}}{{ .Release.Name }}-ferrodns{{- end -}}
{{- define "ferrodns.secret" -}}{{ default (printf "%s-secrets" (include "ferrodns.name" .)) .Values.secrets.existingSecret }}{{- end -}}
{{- define "ferrodns.labels" -}}
app.kubernetes.io/name: ferrodns
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "ferrodns.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}
