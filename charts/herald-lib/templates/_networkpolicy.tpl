{{/*
herald-lib.networkPolicy: deny by default (both policy types, only the rules
below). Every rule names its peers and its ports; a rule whose peer list is
empty is left out rather than rendered as "from anywhere".
*/}}
{{- define "herald-lib.networkPolicy" -}}
{{- $g := .Values.global.network -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "herald-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "herald-lib.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "herald-lib.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  ingress:
    {{- /* Prometheus scrapes the metrics port. */}}
    {{- with (include "herald-lib.netpolRule" (dict "key" "from" "peers" $g.prometheus.peers "ports" (list .Values.ports.metrics))) }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- /* Operators' and other callers' gRPC (heraldctl, portals). */}}
    {{- with (include "herald-lib.netpolRule" (dict "key" "from" "peers" .Values.networkPolicy.grpcClients "ports" (list .Values.ports.grpc))) }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with (include "herald-lib.hook" (list . "ingressRules")) }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with .Values.networkPolicy.extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  egress:
    {{- /* DNS. */}}
    {{- with (include "herald-lib.netpolRule" (dict "key" "to" "peers" $g.dns.peers "ports" $g.dns.ports "protocols" (list "UDP" "TCP"))) }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- /* Kafka: the event log. */}}
    {{- with (include "herald-lib.netpolRule" (dict "key" "to" "peers" $g.kafka.peers "ports" $g.kafka.ports)) }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- if .Values.redis.enabled }}
    {{- with (include "herald-lib.netpolRule" (dict "key" "to" "peers" $g.redis.peers "ports" $g.redis.ports)) }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- end }}
    {{- if .Values.global.otel.endpoint }}
    {{- with (include "herald-lib.netpolRule" (dict "key" "to" "peers" $g.otel.peers "ports" $g.otel.ports)) }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- end }}
    {{- with (include "herald-lib.hook" (list . "egressRules")) }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with .Values.networkPolicy.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
herald-lib.netpolRule renders one ingress ("from") or egress ("to") rule.
Arguments (dict): key "from"|"to"; peers: NetworkPolicyPeer list; ports: list
of port numbers; protocols: optional list (default TCP). Empty peers render
nothing.
*/}}
{{- define "herald-lib.netpolRule" -}}
{{- if and .peers .ports -}}
{{- $protocols := .protocols | default (list "TCP") -}}
- {{ .key }}:
    {{- toYaml .peers | nindent 4 }}
  ports:
    {{- range $port := .ports }}
    {{- range $protocols }}
    - port: {{ $port }}
      protocol: {{ . }}
    {{- end }}
    {{- end }}
{{- end -}}
{{- end -}}

{{/*
herald-lib.cidrPeers turns a list of CIDR strings into ipBlock peers.
*/}}
{{- define "herald-lib.cidrPeers" -}}
{{- range . }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- end -}}

{{/*
herald-lib.siblingPeer: a podSelector peer for another Herald service of this
release (same namespace). Argument: list ctx serviceName.
*/}}
{{- define "herald-lib.siblingPeer" -}}
{{- $ctx := index . 0 -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/name: {{ index . 1 }}
      app.kubernetes.io/instance: {{ $ctx.Release.Name }}
{{- end -}}
