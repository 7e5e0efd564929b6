{{/*
Names, labels and small shared helpers. Every service chart includes
"herald-lib.service" from its own template, and may define the hooks
"<chart>.env", "<chart>.volumes", "<chart>.volumeMounts", "<chart>.ingressRules",
"<chart>.egressRules" and "<chart>.podAnnotations" to add its own parts.
*/}}

{{- define "herald-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* fullname: <release>-<chart>, or the release name alone when it already contains the chart name. */}}
{{- define "herald-lib.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "herald-lib.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* siblingName: the full name of another Herald service of the same release, e.g. "rules". */}}
{{- define "herald-lib.siblingName" -}}
{{- $sib := index . 1 -}}
{{- $ctx := index . 0 -}}
{{- if contains $sib $ctx.Release.Name -}}
{{- $ctx.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" $ctx.Release.Name $sib | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "herald-lib.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "herald-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald-lib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "herald-lib.labels" -}}
helm.sh/chart: {{ include "herald-lib.chart" . }}
{{ include "herald-lib.selectorLabels" . }}
app.kubernetes.io/component: {{ include "herald-lib.name" . }}
app.kubernetes.io/part-of: herald
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "herald-lib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "herald-lib.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image: <registry>/<repository>:<tag>, or @<digest> when a digest is given (preferred in production). */}}
{{- define "herald-lib.image" -}}
{{- $g := .Values.global.image -}}
{{- $registry := .Values.image.registry | default $g.registry -}}
{{- $repo := .Values.image.repository -}}
{{- if $registry -}}{{- $repo = printf "%s/%s" $registry $repo -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.Values.image.tag | default $g.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* listen: ":<port>", the address a container listens on (all interfaces). */}}
{{- define "herald-lib.listen" -}}
{{- printf ":%d" (int .) -}}
{{- end -}}

{{/* env: one environment variable with a literal value, quoted. Argument: list name value. */}}
{{- define "herald-lib.envVar" -}}
- name: {{ index . 0 }}
  value: {{ index . 1 | toString | quote }}
{{- end -}}

{{/* secretEnv: an environment variable read from a Secret. Argument: list envName secretName key. */}}
{{- define "herald-lib.secretEnv" -}}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ index . 1 }}
      key: {{ index . 2 }}
{{- end -}}

{{/* hook: include "<chart>.<name>"; every service chart defines each hook (empty when unused). */}}
{{- define "herald-lib.hook" -}}
{{- $ctx := index . 0 -}}
{{- include (printf "%s.%s" $ctx.Chart.Name (index . 1)) $ctx -}}
{{- end -}}

{{/*
secretFile (list ENV secretName key): the service reads a secret from a
file (its -xxx-file flag, ENV_FILE), never from an environment variable:
the Secret's key is mounted at /etc/herald/secrets/<secretName>/<key> by
the workload's "secrets" volume, which collects every such path.
*/}}
{{- define "herald-lib.secretFile" -}}
- name: {{ index . 0 }}_FILE
  value: {{ printf "/etc/herald/secrets/%s/%s" (index . 1) (index . 2) | quote }}
{{- end -}}

{{/* secretPath (list secretName key): where the "secrets" volume mounts a Secret's key. */}}
{{- define "herald-lib.secretPath" -}}
{{- printf "/etc/herald/secrets/%s/%s" (index . 0) (index . 1) -}}
{{- end -}}
