{{/*
herald-lib.service renders every Kubernetes object of one Herald service.
The calling chart passes its root context; the service-specific parts come
from its hooks (see _helpers.tpl) and its values (see any service chart's
values.yaml for the documented shape).
*/}}
{{- define "herald-lib.service" -}}
{{- include "herald-lib.validate" . }}
{{- if .Values.serviceAccount.create }}
---
{{ include "herald-lib.serviceAccount" . }}
{{- end }}
---
{{ include "herald-lib.svc" . }}
{{- if .Values.externalService.enabled }}
---
{{ include "herald-lib.externalSvc" . }}
{{- end }}
---
{{ include "herald-lib.deployment" . }}
{{- if .Values.autoscaling.enabled }}
---
{{ include "herald-lib.hpa" . }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
---
{{ include "herald-lib.pdb" . }}
{{- end }}
{{- if .Values.networkPolicy.enabled }}
---
{{ include "herald-lib.networkPolicy" . }}
{{- end }}
{{- if .Values.metrics.serviceMonitor.enabled }}
---
{{ include "herald-lib.serviceMonitor" . }}
{{- end }}
{{- if and .Values.ingress .Values.ingress.enabled }}
---
{{ include "herald-lib.ingress" . }}
{{- end }}
{{- end -}}

{{/* validate: checks that a JSON schema cannot express, with messages naming the setting. */}}
{{- define "herald-lib.validate" -}}
{{- $p := int .Values.global.kafka.partitions -}}
{{- if and .Values.consumer .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) $p) -}}
{{- fail (printf "%s.autoscaling.maxReplicas (%d) exceeds global.kafka.partitions (%d): replicas beyond the partition count of a consumer group sit idle" .Chart.Name (int .Values.autoscaling.maxReplicas) $p) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) exceeds %s.autoscaling.maxReplicas (%d)" .Chart.Name (int .Values.autoscaling.minReplicas) .Chart.Name (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and .Values.redis.enabled (not .Values.global.redis.addr) -}}
{{- fail (printf "global.redis.addr is required: the %s service keeps its timers/deduplication in Redis" .Chart.Name) -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.global.redis.existingSecret (not .Values.redis.passwordFlag) -}}
{{- fail (printf "global.redis.existingSecret is set, but the %s service has no redis-password flag: it would connect without AUTH" .Chart.Name) -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled .Values.podDisruptionBudget.minAvailable .Values.podDisruptionBudget.maxUnavailable -}}
{{- fail (printf "%s.podDisruptionBudget: set minAvailable or maxUnavailable, not both" .Chart.Name) -}}
{{- end -}}
{{- if and .Values.tls.existingSecret (not .Values.probes.port) -}}
{{- fail (printf "%s.tls.existingSecret is set but %s.probes.port is not: the kubelet's gRPC probes speak plaintext, so they need a plaintext health port" .Chart.Name .Chart.Name) -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- if not .Values.global.network.kafka.peers -}}
{{- fail "global.network.kafka.peers is empty: name the Kafka brokers (namespaceSelector/podSelector/ipBlock) or the NetworkPolicy would allow the Kafka port to anywhere" -}}
{{- end -}}
{{- if and .Values.redis.enabled (not .Values.global.network.redis.peers) -}}
{{- fail "global.network.redis.peers is empty: name the Redis servers (namespaceSelector/podSelector/ipBlock)" -}}
{{- end -}}
{{- if and .Values.global.otel.endpoint (not .Values.global.network.otel.peers) -}}
{{- fail "global.network.otel.peers is empty while global.otel.endpoint is set: name the OpenTelemetry collector" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "herald-lib.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "herald-lib.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "herald-lib.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}

{{- define "herald-lib.svc" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "herald-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "herald-lib.labels" . | nindent 4 }}
  {{- with .Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: ClusterIP
  selector:
    {{- include "herald-lib.selectorLabels" . | nindent 4 }}
  ports:
    {{- range $name, $port := .Values.ports }}
    {{- include "herald-lib.svcPort" (list $name $port) | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
herald-lib.externalSvc: a LoadBalancer (or NodePort) Service exposing only the
named ports to clients outside the cluster (e.g. MLLP from a RIS). Metrics and
the rest stay on the ClusterIP Service. externalTrafficPolicy Local keeps the
client's source address, so the NetworkPolicy's ipBlocks can check it.
*/}}
{{- define "herald-lib.externalSvc" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "herald-lib.fullname" . }}-external
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "herald-lib.labels" . | nindent 4 }}
  {{- with .Values.externalService.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .Values.externalService.type }}
  externalTrafficPolicy: Local
  {{- with .Values.externalService.loadBalancerSourceRanges }}
  loadBalancerSourceRanges:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    {{- include "herald-lib.selectorLabels" . | nindent 4 }}
  ports:
    {{- range $name := .Values.externalService.ports }}
    {{- $port := index $.Values.ports $name | default 0 }}
    {{- if not $port }}{{ fail (printf "externalService.ports names %q, which is not in ports" $name) }}{{ end }}
    {{- include "herald-lib.svcPort" (list $name $port) | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "herald-lib.svcPort" -}}
{{- $name := index . 0 -}}
- name: {{ $name }}
  port: {{ index . 1 }}
  targetPort: {{ $name }}
  protocol: TCP
  {{- if eq $name "grpc" }}
  appProtocol: grpc
  {{- else if eq $name "http" }}
  appProtocol: http
  {{- end }}
{{- end -}}

{{- define "herald-lib.deployment" -}}
{{- $fullname := include "herald-lib.fullname" . -}}
{{- $probePort := .Values.probes.port | default .Values.ports.grpc -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "herald-lib.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "herald-lib.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "herald-lib.labels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- if .Values.metrics.prometheusAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .Values.ports.metrics | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with (include "herald-lib.hook" (list . "podAnnotations")) }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "herald-lib.serviceAccountName" . }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with .Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      {{- if .Values.topologySpread.enabled }}
      topologySpreadConstraints:
        - topologyKey: {{ .Values.topologySpread.zoneKey }}
          maxSkew: {{ .Values.topologySpread.maxSkew }}
          whenUnsatisfiable: {{ .Values.topologySpread.whenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "herald-lib.selectorLabels" . | nindent 14 }}
          matchLabelKeys:
            - pod-template-hash
        - topologyKey: kubernetes.io/hostname
          maxSkew: 1
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "herald-lib.selectorLabels" . | nindent 14 }}
          matchLabelKeys:
            - pod-template-hash
      {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .Chart.Name }}
          image: {{ include "herald-lib.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          securityContext:
            runAsNonRoot: true
            runAsUser: 65532
            runAsGroup: 65532
            privileged: false
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              type: RuntimeDefault
          ports:
            {{- range $name, $port := .Values.ports }}
            - name: {{ $name }}
              containerPort: {{ $port }}
              protocol: TCP
            {{- end }}
          env:
            {{- include "herald-lib.env" . | nindent 12 }}
          startupProbe:
            grpc:
              port: {{ $probePort }}
              service: ""
            periodSeconds: {{ .Values.probes.startup.periodSeconds }}
            failureThreshold: {{ .Values.probes.startup.failureThreshold }}
            timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
          livenessProbe:
            grpc:
              port: {{ $probePort }}
              service: ""
            periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
            failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
            timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
          readinessProbe:
            grpc:
              port: {{ $probePort }}
              service: ""
            periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
            failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
            timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
          {{- with .Values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if .Values.tls.existingSecret }}
            - name: tls
              mountPath: /etc/herald/tls
              readOnly: true
            {{- end }}
            {{- if (.Values.global.roleBindings | default dict).configMap }}
            # The whole ConfigMap as a directory (not a subPath), so that an
            # edit reaches the pod and the services re-read it.
            - name: role-bindings
              mountPath: /etc/herald/authz
              readOnly: true
            {{- end }}
            {{- if (include "herald-lib.secretSources" .) }}
            - name: secrets
              mountPath: /etc/herald/secrets
              readOnly: true
            {{- end }}
            {{- with (include "herald-lib.hook" (list . "volumeMounts")) }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if .Values.tls.existingSecret }}
        - name: tls
          secret:
            secretName: {{ .Values.tls.existingSecret }}
            defaultMode: 0440
        {{- end }}
        {{- with (.Values.global.roleBindings | default dict).configMap }}
        - name: role-bindings
          configMap:
            name: {{ . }}
        {{- end }}
        {{- with (include "herald-lib.secretSources" .) }}
        - name: secrets
          projected:
            defaultMode: 0440
            sources:
              {{- . | nindent 14 }}
        {{- end }}
        {{- with (include "herald-lib.hook" (list . "volumes")) }}
        {{- . | nindent 8 }}
        {{- end }}
{{- end -}}

{{/* env: the configuration every service shares, then the service's own, then free-form settings. */}}
{{- define "herald-lib.env" -}}
{{- $g := .Values.global -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{ include "herald-lib.envVar" (list "HERALD_LOG_LEVEL" (.Values.logLevel | default $g.logLevel)) }}
{{ include "herald-lib.envVar" (list "HERALD_GRPC_ADDR" (include "herald-lib.listen" .Values.ports.grpc)) }}
{{ include "herald-lib.envVar" (list "HERALD_METRICS_ADDR" (include "herald-lib.listen" .Values.ports.metrics)) }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_BROKERS" (join "," $g.kafka.brokers)) }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_EVENTS_TOPIC" $g.kafka.topics.events) }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_DLQ_TOPIC" $g.kafka.topics.dlq) }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_STATE_TOPIC" $g.kafka.topics.state) }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_PARTITIONS" $g.kafka.partitions) }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_REPLICATION_FACTOR" $g.kafka.replicationFactor) }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_MIN_INSYNC_REPLICAS" $g.kafka.minInsyncReplicas) }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_RETENTION" $g.kafka.retention) }}
{{- with $g.kafka.tls }}{{ if .caSecret }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_TLS" "true") }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_TLS_CA" (include "herald-lib.secretPath" (list .caSecret .caKey))) }}
{{- end }}{{ end }}
{{- with $g.kafka.sasl }}{{ if .existingSecret }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_SASL_MECHANISM" .mechanism) }}
{{ include "herald-lib.envVar" (list "HERALD_KAFKA_SASL_USER" (printf "herald-%s" $.Chart.Name)) }}
{{ include "herald-lib.secretFile" (list "HERALD_KAFKA_SASL_PASSWORD" .existingSecret (printf "herald-%s" $.Chart.Name)) }}
{{- end }}{{ end }}
{{- if .Values.redis.enabled }}
{{ include "herald-lib.envVar" (list "HERALD_REDIS_ADDR" $g.redis.addr) }}
{{- if and $g.redis.existingSecret .Values.redis.passwordFlag }}
{{- if $g.redis.aclUsers }}
{{ include "herald-lib.envVar" (list "HERALD_REDIS_USER" (printf "herald-%s" .Chart.Name)) }}
{{ include "herald-lib.secretFile" (list "HERALD_REDIS_PASSWORD" $g.redis.existingSecret (printf "herald-%s" .Chart.Name)) }}
{{- else }}
{{ include "herald-lib.secretFile" (list "HERALD_REDIS_PASSWORD" $g.redis.existingSecret $g.redis.passwordKey) }}
{{- end }}
{{- end }}
{{- with $g.redis.tls }}{{ if .caSecret }}
{{ include "herald-lib.envVar" (list "HERALD_REDIS_TLS" "true") }}
{{ include "herald-lib.envVar" (list "HERALD_REDIS_TLS_CA" (include "herald-lib.secretPath" (list .caSecret .caKey))) }}
{{- end }}{{ end }}
{{- end }}
{{- if $g.otel.endpoint }}
{{ include "herald-lib.envVar" (list "HERALD_OTLP_ENDPOINT" $g.otel.endpoint) }}
{{ include "herald-lib.envVar" (list "OTEL_EXPORTER_OTLP_ENDPOINT" (printf "http://%s" $g.otel.endpoint)) }}
{{ include "herald-lib.envVar" (list "OTEL_EXPORTER_OTLP_PROTOCOL" "grpc") }}
{{- end }}
{{ include "herald-lib.envVar" (list "OTEL_SERVICE_NAME" (printf "herald-%s" .Chart.Name)) }}
{{- $attrs := list "service.namespace=herald" "k8s.namespace.name=$(POD_NAMESPACE)" "k8s.pod.name=$(POD_NAME)" -}}
{{- range $k, $v := $g.otel.resourceAttributes }}{{ $attrs = append $attrs (printf "%s=%s" $k $v) }}{{ end }}
{{ include "herald-lib.envVar" (list "OTEL_RESOURCE_ATTRIBUTES" (join "," $attrs)) }}
{{- if .Values.tls.existingSecret }}
{{ include "herald-lib.envVar" (list "HERALD_GRPC_TLS_CERT" "/etc/herald/tls/tls.crt") }}
{{ include "herald-lib.envVar" (list "HERALD_GRPC_TLS_KEY" "/etc/herald/tls/tls.key") }}
{{- if .Values.tls.clientCA }}
{{ include "herald-lib.envVar" (list "HERALD_GRPC_CLIENT_CA" "/etc/herald/tls/ca.crt") }}
{{- end }}
{{- end }}
{{- if .Values.probes.port }}
{{ include "herald-lib.envVar" (list "HERALD_GRPC_HEALTH_ADDR" (include "herald-lib.listen" .Values.probes.port)) }}
{{- end }}
{{- if has .Chart.Name (list "intake" "rules" "notification" "acknowledgement") }}{{ with ($g.eventSigning | default dict) }}
{{- with .signingKeys }}{{ if .existingSecret }}
{{ include "herald-lib.envVar" (list "HERALD_EVENT_SIGNING_KEY_FILE" (include "herald-lib.secretPath" (list .existingSecret (printf "%s.pem" $.Chart.Name)))) }}
{{- end }}{{ end }}
{{- with .keySet }}{{ if .existingSecret }}
{{ include "herald-lib.envVar" (list "HERALD_EVENT_VERIFY_KEYS_FILE" (include "herald-lib.secretPath" (list .existingSecret .key))) }}
{{- end }}{{ end }}
{{- end }}{{ end }}
{{- with ($g.roleBindings | default dict) }}{{ if .configMap }}
{{ include "herald-lib.envVar" (list "HERALD_ROLE_BINDINGS_FILE" (printf "/etc/herald/authz/%s" .key)) }}
{{- end }}{{ end }}
{{- with (include "herald-lib.hook" (list . "env")) }}
{{ . }}
{{- end }}
{{- range $flag, $value := .Values.settings }}
{{ include "herald-lib.envVar" (list (printf "HERALD_%s" ($flag | upper | replace "-" "_")) $value) }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "herald-lib.hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "herald-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "herald-lib.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "herald-lib.fullname" . }}
  minReplicas: {{ .Values.autoscaling.minReplicas }}
  maxReplicas: {{ .Values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .Values.autoscaling.targetCPUUtilizationPercentage }}
    {{- with .Values.autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
  behavior:
    scaleDown:
      # Scaling a consumer group down rebalances its partitions: do it slowly.
      stabilizationWindowSeconds: 600
      policies:
        - type: Pods
          value: 1
          periodSeconds: 300
    scaleUp:
      stabilizationWindowSeconds: 60
      policies:
        - type: Pods
          value: 2
          periodSeconds: 60
{{- end -}}

{{- define "herald-lib.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "herald-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "herald-lib.labels" . | nindent 4 }}
spec:
  {{- if .Values.podDisruptionBudget.maxUnavailable }}
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}
  {{- else }}
  minAvailable: {{ .Values.podDisruptionBudget.minAvailable | default 1 }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "herald-lib.selectorLabels" . | nindent 6 }}
{{- end -}}

{{- define "herald-lib.serviceMonitor" -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "herald-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "herald-lib.labels" . | nindent 4 }}
    {{- with .Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "herald-lib.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .Release.Namespace }}
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ .Values.metrics.serviceMonitor.interval }}
      scrapeTimeout: {{ .Values.metrics.serviceMonitor.scrapeTimeout }}
{{- end -}}

{{/*
secretSources: the projected-volume sources of every secret file the
service's environment names (herald-lib.secretFile), one key each, so that
a Secret is mounted only for the keys the service reads.
*/}}
{{- define "herald-lib.secretSources" -}}
{{- $seen := dict -}}
{{- range (include "herald-lib.env" . | fromYamlArray) -}}
{{- if and (kindIs "map" .) (hasKey . "value") (hasPrefix "/etc/herald/secrets/" (toString .value)) -}}
{{- $parts := splitList "/" (trimPrefix "/etc/herald/secrets/" .value) -}}
{{- $path := printf "%s/%s" (index $parts 0) (index $parts 1) -}}
{{- if not (hasKey $seen $path) -}}
{{- $_ := set $seen $path true }}
- secret:
    name: {{ index $parts 0 }}
    items:
      - key: {{ index $parts 1 }}
        path: {{ $path }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
