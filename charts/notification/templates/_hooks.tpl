{{/* Hooks of the notification service for herald-lib.service. */}}

{{- define "notification.rulesAddr" -}}
{{- .Values.rules.addr | default (printf "%s:%d" (include "herald-lib.siblingName" (list . "rules")) (int .Values.rules.port)) -}}
{{- end -}}

{{- define "notification.env" -}}
{{ include "herald-lib.envVar" (list "HERALD_RECEIPTS_ADDR" (include "herald-lib.listen" .Values.ports.http)) }}
{{- with .Values.receipts.existingSecret }}
{{ include "herald-lib.secretFile" (list "HERALD_RECEIPTS_SECRET" . $.Values.receipts.secretKey) }}
{{- end }}
{{ include "herald-lib.envVar" (list "HERALD_RULES_ADDR" (include "notification.rulesAddr" .)) }}
{{ include "herald-lib.envVar" (list "HERALD_ACK_BASE_URL" .Values.ackLink.baseURL) }}
{{- with .Values.global.ackLink.signingKey }}
{{ include "herald-lib.secretFile" (list "HERALD_ACK_LINK_KEY" .existingSecret .key) }}
{{- end }}
{{ include "herald-lib.secretFile" (list "HERALD_REFERENCE_KEY" .Values.global.reference.existingSecret .Values.global.reference.key) }}
{{ include "herald-lib.envVar" (list "HERALD_TEMPLATES_DIR" "/etc/herald/templates") }}
{{- if .Values.smtp.addr }}
{{ include "herald-lib.envVar" (list "HERALD_SMTP_ADDR" .Values.smtp.addr) }}
{{ include "herald-lib.envVar" (list "HERALD_SMTP_FROM" .Values.smtp.from) }}
{{ include "herald-lib.envVar" (list "HERALD_SMTP_STARTTLS" .Values.smtp.starttls) }}
{{- with .Values.smtp.existingSecret }}
{{ include "herald-lib.secretEnv" (list "HERALD_SMTP_USER" . $.Values.smtp.userKey) }}
{{ include "herald-lib.secretFile" (list "HERALD_SMTP_PASSWORD" . $.Values.smtp.passwordKey) }}
{{- end }}
{{- end }}
{{- if .Values.sms.existingSecret }}
{{- if not .Values.sms.templateID }}
{{- fail "notification.sms.templateID is required when notification.sms.existingSecret is set: name the Notify template Herald's text goes into" }}
{{- end }}
{{ include "herald-lib.envVar" (list "HERALD_NOTIFY_BASE_URL" .Values.sms.baseURL) }}
{{ include "herald-lib.envVar" (list "HERALD_NOTIFY_TEMPLATE_ID" .Values.sms.templateID) }}
{{ include "herald-lib.secretFile" (list "HERALD_NOTIFY_API_KEY" .Values.sms.existingSecret .Values.sms.apiKeyKey) }}
{{- with .Values.sms.callbackTokenKey }}
{{ include "herald-lib.secretFile" (list "HERALD_NOTIFY_CALLBACK_TOKEN" $.Values.sms.existingSecret .) }}
{{- end }}
{{- end }}
{{- if .Values.webhook.existingSecret }}
{{ include "herald-lib.secretFile" (list "HERALD_WEBHOOK_SECRET" .Values.webhook.existingSecret .Values.webhook.secretKey) }}
{{- end }}
{{- end -}}

{{- define "notification.volumeMounts" -}}
- name: templates
  mountPath: /etc/herald/templates
  readOnly: true
{{- end -}}

{{/*
Template overrides are laid out as <dir>/<ODS>/<channel>/<name>.tmpl; a
ConfigMap key cannot hold a "/", so keys are <ODS>.<channel>.<name> and
items put each under its path.
*/}}
{{- define "notification.volumes" -}}
- name: templates
  configMap:
    name: {{ .Values.templatesConfigMap | default (printf "%s-templates" (include "herald-lib.fullname" .)) }}
    {{- if not .Values.templatesConfigMap }}
    items:
      {{- range $ods, $channels := .Values.templates }}
      {{- range $channel, $files := $channels }}
      {{- range $name, $_ := $files }}
      - key: {{ printf "%s.%s.%s" $ods $channel $name }}
        path: {{ printf "%s/%s/%s" $ods $channel $name }}
      {{- end }}
      {{- end }}
      {{- end }}
    {{- end }}
{{- end -}}

{{- define "notification.podAnnotations" -}}
checksum/templates: {{ toYaml .Values.templates | sha256sum }}
{{- end -}}

{{/* Delivery receipts (e.g. GOV.UK Notify callbacks through the ingress controller). */}}
{{- define "notification.ingressRules" -}}
{{- include "herald-lib.netpolRule" (dict "key" "from" "peers" .Values.networkPolicy.receiptSources "ports" (list .Values.ports.http)) }}
{{- end -}}

{{/* The rules gRPC of this release (or rules.peers), then each delivery destination. */}}
{{- define "notification.egressRules" -}}
{{- $rulesPeers := .Values.networkPolicy.rulesPeers | default (include "herald-lib.siblingPeer" (list . "rules") | fromYamlArray) -}}
{{- include "herald-lib.netpolRule" (dict "key" "to" "peers" $rulesPeers "ports" (list .Values.rules.port)) }}
{{- range .Values.networkPolicy.destinations }}
{{- if .cidrs }}
{{ include "herald-lib.netpolRule" (dict "key" "to" "peers" (include "herald-lib.cidrPeers" .cidrs | fromYamlArray) "ports" .ports) }}
{{- end }}
{{- end }}
{{- end -}}
