{{- define "dr-reactor.name" -}}{{ .Release.Name }}{{- end -}}
{{- define "dr-reactor.labels" -}}
app.kubernetes.io/name: dr-reactor
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* Where the Secret is mounted; config secrets read files under it. */ -}}
{{- define "dr-reactor.secretDir" -}}/etc/dr-reactor/secrets{{- end -}}

{{- /*
dr-reactor.yaml: .Values.config with what the chart wires itself. Secrets
are {env: …} (set from the Secret by the Deployment) or {file: …} (the
Secret's volume), never inline.
*/ -}}
{{- define "dr-reactor.config" -}}
{{- $secrets := include "dr-reactor.secretDir" . -}}
{{- $c := deepCopy .Values.config -}}
{{- $_ := set $c "listen" "0.0.0.0:9099" -}}
{{- if not .Values.ha.enabled }}
{{- $_ := set $c "store" (dict "url" "sqlite:///data/dr-reactor.db") -}}
{{- end }}
{{- $catalogue := "/etc/dr-reactor/services.yaml" -}}
{{- if .Values.catalogue }}{{ $catalogue = "/etc/dr-reactor/config/services.yaml" }}{{ end -}}
{{- $rules := merge (dict "paths" (list "/etc/dr-reactor/rules") "catalogue" $catalogue) (deepCopy (.Values.config.rules | default dict)) -}}
{{- $_ := set $c "rules" $rules -}}
{{- $webhook := deepCopy (.Values.config.webhook | default dict) -}}
{{- $_ := set $webhook "auth" (dict "bearer_token" (dict "env" "DR_REACTOR_WEBHOOK_TOKEN")) -}}
{{- $_ := set $c "webhook" $webhook -}}
{{- $users := list -}}
{{- range $id, $key := .Values.apiUsers }}
{{- $users = append $users (dict "id" $id "token" (dict "file" (printf "%s/%s" $secrets $key))) -}}
{{- end }}
{{- /* The read token comes from DR_REACTOR_READ_TOKEN, when the Secret has it. */ -}}
{{- $_ := set $c "api" (dict "admin_token" (dict "env" "DR_REACTOR_ADMIN_TOKEN") "users" $users) -}}
{{- if .Values.metrics.separatePort }}
{{- $server := deepCopy (.Values.config.server | default dict) -}}
{{- $_ := set $server "metrics_listen" (printf "0.0.0.0:%d" (int .Values.metrics.port)) -}}
{{- $_ := set $c "server" $server -}}
{{- end }}
{{- if .Values.silences }}
{{- $_ := set $c "silences" (dict "file" "/etc/dr-reactor/config/silences.yaml") -}}
{{- end }}
{{- if .Values.slack.channel }}
{{- $slack := dict "bot_token" (dict "env" "SLACK_BOT_TOKEN") "signing_secret" (dict "env" "SLACK_SIGNING_SECRET") "channel" .Values.slack.channel -}}
{{- if .Values.slack.apiUrl }}{{ $_ := set $slack "api_url" .Values.slack.apiUrl }}{{ end -}}
{{- $_ := set $c "slack" $slack -}}
{{- end }}
{{- if .Values.config.kafka }}
{{- $kafka := deepCopy .Values.config.kafka -}}
{{- $props := dict -}}
{{- range $prop, $key := .Values.kafkaSecretProperties }}
{{- $_ := set $props $prop (dict "file" (printf "%s/%s" $secrets $key)) -}}
{{- end }}
{{- if $props }}{{ $_ := set $kafka "secret_properties" $props }}{{ end -}}
{{- $_ := set $c "kafka" $kafka -}}
{{- else }}
{{- $_ := unset $c "kafka" -}}
{{- end }}
{{- if not .Values.config.audit }}{{ $_ := unset $c "audit" }}{{ end -}}
{{- toYaml $c -}}
{{- end -}}
