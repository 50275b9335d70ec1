{{- define "dr-reactor.name" -}}{{ .Release.Name }}{{- end -}}
{{- define "dr-reactor.labels" -}}
app.kubernetes.io/name: dr-reactor
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
