{{/* Hooks of the acknowledgement service for herald-lib.service. */}}

{{- define "acknowledgement.env" -}}
{{ include "herald-lib.envVar" (list "HERALD_HTTP_ADDR" (include "herald-lib.listen" .Values.ports.http)) }}
{{ include "herald-lib.envVar" (list "HERALD_PUBLIC_URL" .Values.ackPage.baseURL) }}
{{ include "herald-lib.envVar" (list "HERALD_REPLICA" "$(POD_NAME)") }}
{{- with .Values.global.ackLink.publicKeys }}
{{ include "herald-lib.secretFile" (list "HERALD_ACK_LINK_PUBLIC_KEYS" .existingSecret .key) }}
{{- end }}
{{ include "herald-lib.secretFile" (list "HERALD_REFERENCE_KEY" .Values.global.reference.existingSecret .Values.global.reference.key) }}
{{- if .Values.oidc.issuerURL }}
{{ include "herald-lib.envVar" (list "HERALD_OIDC_ISSUER" .Values.oidc.issuerURL) }}
{{ include "herald-lib.envVar" (list "HERALD_OIDC_CLIENT_ID" .Values.oidc.clientID) }}
{{ include "herald-lib.envVar" (list "HERALD_OIDC_PERSON_CLAIM" .Values.oidc.personClaim) }}
{{ include "herald-lib.secretFile" (list "HERALD_OIDC_CLIENT_SECRET" .Values.oidc.existingSecret .Values.oidc.clientSecretKey) }}
{{ include "herald-lib.secretFile" (list "HERALD_SESSION_KEY" .Values.oidc.existingSecret .Values.oidc.sessionKeyKey) }}
{{- end }}
{{- end -}}

{{- define "acknowledgement.volumeMounts" -}}
{{- end -}}

{{- define "acknowledgement.volumes" -}}
{{- end -}}

{{- define "acknowledgement.podAnnotations" -}}
{{- end -}}

{{/* Clinicians open the ack-link page through the ingress controller. */}}
{{- define "acknowledgement.ingressRules" -}}
{{- include "herald-lib.netpolRule" (dict "key" "from" "peers" .Values.networkPolicy.ackPageClients "ports" (list .Values.ports.http)) }}
{{- end -}}

{{/* The OIDC provider (token exchange and keys) for the ack page's sign-in. */}}
{{- define "acknowledgement.egressRules" -}}
{{- with .Values.networkPolicy.oidcProvider.cidrs }}
{{- include "herald-lib.netpolRule" (dict "key" "to" "peers" (include "herald-lib.cidrPeers" . | fromYamlArray) "ports" $.Values.networkPolicy.oidcProvider.ports) }}
{{- end }}
{{- end -}}
