{{/* Hooks of the rules service for herald-lib.service. */}}

{{- define "rules.env" -}}
{{ include "herald-lib.envVar" (list "HERALD_BUNDLE_DIR" "/etc/herald/bundles") }}
{{- end -}}

{{- define "rules.volumeMounts" -}}
- name: bundles
  mountPath: /etc/herald/bundles
  readOnly: true
{{- end -}}

{{/*
The bundle directory holds one sub-directory per trust (<ODS>/<file>.yaml).
A ConfigMap key cannot hold a "/", so each trust's files come from its own
ConfigMap, projected under <ODS>/. No subPath: updated policies reach the
running pods (the checksum annotation also rolls them).
*/}}
{{- define "rules.volumes" -}}
{{- $fullname := include "herald-lib.fullname" . -}}
- name: bundles
  projected:
    sources:
      {{- range $ods, $files := .Values.bundles }}
      - configMap:
          name: {{ printf "%s-bundle-%s" $fullname ($ods | lower) }}
          items:
            {{- range $file, $_ := $files }}
            - key: {{ $file }}
              path: {{ $ods }}/{{ $file }}
            {{- end }}
      {{- end }}
      {{- range .Values.bundleConfigMaps }}
      {{- $tenant := .tenant }}
      - configMap:
          name: {{ .name }}
          items:
            {{- range .files }}
            - key: {{ . }}
              path: {{ $tenant }}/{{ . }}
            {{- end }}
      {{- end }}
{{- end -}}

{{- define "rules.podAnnotations" -}}
checksum/bundles: {{ toYaml .Values.bundles | sha256sum }}
{{- end -}}

{{/* The notification service of this release resolves targets over gRPC. */}}
{{- define "rules.ingressRules" -}}
{{- include "herald-lib.netpolRule" (dict "key" "from" "peers" (include "herald-lib.siblingPeer" (list . "notification") | fromYamlArray) "ports" (list .Values.ports.grpc)) }}
{{- end -}}

{{- define "rules.egressRules" -}}
{{- end -}}
