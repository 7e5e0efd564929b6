{{/*
herald-lib.ingress: an Ingress to the service's "http" port for exactly the
listed path prefixes (the ack-link page and its sign-in, delivery receipts,
FHIR), with TLS from a Secret.
*/}}
{{- define "herald-lib.ingress" -}}
{{- if not .Values.ports.http -}}
{{- fail (printf "%s.ingress.enabled needs an http port" .Chart.Name) -}}
{{- end -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "herald-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "herald-lib.labels" . | nindent 4 }}
  {{- with .Values.ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  ingressClassName: {{ .Values.ingress.className }}
  tls:
    - hosts:
        - {{ .Values.ingress.host }}
      secretName: {{ .Values.ingress.tlsSecretName }}
  rules:
    - host: {{ .Values.ingress.host }}
      http:
        paths:
          {{- range .Values.ingress.paths }}
          - path: {{ . }}
            pathType: Prefix
            backend:
              service:
                name: {{ include "herald-lib.fullname" $ }}
                port:
                  name: http
          {{- end }}
{{- end -}}
