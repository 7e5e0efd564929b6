{{/* Hooks of the intake service for herald-lib.service. */}}

{{- define "intake.env" -}}
{{ include "herald-lib.envVar" (list "HERALD_MLLP_ADDR" (include "herald-lib.listen" .Values.ports.mllp)) }}
{{ include "herald-lib.envVar" (list "HERALD_FHIR_ADDR" (include "herald-lib.listen" .Values.ports.http)) }}
{{ include "herald-lib.envVar" (list "HERALD_TENANTS_FILE" "/etc/herald/tenants/tenants.yaml") }}
{{- if or .Values.senderBindings .Values.senderBindingsConfigMap }}
{{ include "herald-lib.envVar" (list "HERALD_SENDER_BINDINGS_FILE" "/etc/herald/senders/senders.yaml") }}
{{- end }}
{{- with .Values.patientDataKeys }}
{{- if ne (empty .keyring.existingSecret) (empty .kek.existingSecret) }}{{- fail "patientDataKeys: set both keyring.existingSecret and kek.existingSecret, or neither" }}{{- end }}
{{- if .keyring.existingSecret }}
{{ include "herald-lib.envVar" (list "HERALD_KEYRING_FILE" (include "herald-lib.secretPath" (list .keyring.existingSecret .keyring.key))) }}
{{ include "herald-lib.envVar" (list "HERALD_KEK_FILE" (include "herald-lib.secretPath" (list .kek.existingSecret .kek.key))) }}
{{- end }}
{{- end }}
{{- with .Values.senderTLS.existingSecret }}
{{- range $l := list "MLLP" "FHIR" }}
{{ include "herald-lib.envVar" (list (printf "HERALD_%s_TLS_CERT" $l) (include "herald-lib.secretPath" (list $.Values.senderTLS.existingSecret "tls.crt"))) }}
{{ include "herald-lib.envVar" (list (printf "HERALD_%s_TLS_KEY" $l) (include "herald-lib.secretPath" (list $.Values.senderTLS.existingSecret "tls.key"))) }}
{{ include "herald-lib.envVar" (list (printf "HERALD_%s_CLIENT_CA" $l) (include "herald-lib.secretPath" (list $.Values.senderTLS.existingSecret "ca.crt"))) }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "intake.volumeMounts" -}}
- name: tenants
  mountPath: /etc/herald/tenants
  readOnly: true
{{- if or .Values.senderBindings .Values.senderBindingsConfigMap }}
- name: senders
  mountPath: /etc/herald/senders
  readOnly: true
{{- end }}
{{- end -}}

{{- define "intake.volumes" -}}
- name: tenants
  configMap:
    name: {{ .Values.tenantsConfigMap | default (printf "%s-tenants" (include "herald-lib.fullname" .)) }}
{{- if or .Values.senderBindings .Values.senderBindingsConfigMap }}
- name: senders
  configMap:
    name: {{ .Values.senderBindingsConfigMap | default (printf "%s-senders" (include "herald-lib.fullname" .)) }}
{{- end }}
{{- end -}}

{{- define "intake.podAnnotations" -}}
checksum/tenants: {{ toYaml .Values.tenants | sha256sum }}
checksum/senders: {{ toYaml .Values.senderBindings | sha256sum }}
{{- end -}}

{{/* RIS, reporting-system and FHIR clients reach MLLP, FHIR HTTP and gRPC. */}}
{{- define "intake.ingressRules" -}}
{{- include "herald-lib.netpolRule" (dict "key" "from" "peers" .Values.networkPolicy.clients "ports" (list .Values.ports.mllp .Values.ports.http .Values.ports.grpc)) }}
{{- end -}}

{{- define "intake.egressRules" -}}
{{- end -}}
