{{/* Hooks of the intake service for herald-lib.service. */}}

{{- define "intake.env" -}}
{{ include "herald-lib.envVar" (list "HERALD_MLLP_ADDR" (include "herald-lib.listen" .Values.ports.mllp)) }}
{{ include "herald-lib.envVar" (list "HERALD_FHIR_ADDR" (include "herald-lib.listen" .Values.ports.http)) }}
{{ include "herald-lib.envVar" (list "HERALD_TENANTS_FILE" "/etc/herald/tenants/tenants.yaml") }}
{{- if .Values.mllpTLS.existingSecret }}
{{ include "herald-lib.envVar" (list "HERALD_MLLP_TLS_CERT" "/etc/herald/mllp-tls/tls.crt") }}
{{ include "herald-lib.envVar" (list "HERALD_MLLP_TLS_KEY" "/etc/herald/mllp-tls/tls.key") }}
{{- end }}
{{- end -}}

{{- define "intake.volumeMounts" -}}
- name: tenants
  mountPath: /etc/herald/tenants
  readOnly: true
{{- if .Values.mllpTLS.existingSecret }}
- name: mllp-tls
  mountPath: /etc/herald/mllp-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "intake.volumes" -}}
- name: tenants
  configMap:
    name: {{ .Values.tenantsConfigMap | default (printf "%s-tenants" (include "herald-lib.fullname" .)) }}
{{- if .Values.mllpTLS.existingSecret }}
- name: mllp-tls
  secret:
    secretName: {{ .Values.mllpTLS.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "intake.podAnnotations" -}}
checksum/tenants: {{ toYaml .Values.tenants | sha256sum }}
{{- end -}}

{{/* RIS, reporting-system and FHIR clients reach MLLP, FHIR HTTP and gRPC. */}}
{{- define "intake.ingressRules" -}}
{{- include "herald-lib.netpolRule" (dict "key" "from" "peers" .Values.networkPolicy.clients "ports" (list .Values.ports.mllp .Values.ports.http .Values.ports.grpc)) }}
{{- end -}}

{{- define "intake.egressRules" -}}
{{- end -}}
