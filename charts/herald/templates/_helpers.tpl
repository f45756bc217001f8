{{/* herald.fullname is the release's name prefix, at most 63 characters. */}}
{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* herald.labels: the common labels; call with (dict "ctx" $ "component" "edge"). */}}
{{- define "herald.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: herald
{{- end -}}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* herald.image: call with (dict "ctx" $ "image" .Values.edge.image). */}}
{{- define "herald.image" -}}
{{- $tag := .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
{{- if .ctx.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .ctx.Values.image.registry) .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* herald.secretName: the credentials Secret, or "" when there is none. */}}
{{- define "herald.secretName" -}}
{{- if .Values.credentials.existingSecret -}}
{{- .Values.credentials.existingSecret -}}
{{- else if include "herald.secretData" . -}}
{{- printf "%s-credentials" (include "herald.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* herald.secretData: the chart-made Secret's data, only non-empty keys. */}}
{{- define "herald.secretData" -}}
{{- $c := .Values.credentials -}}
{{- range $key, $v := dict "nats-url" $c.natsURL "redis-username" $c.redisUsername "redis-password" $c.redisPassword "redis-sentinel-password" $c.redisSentinelPassword "etcd-username" $c.etcdUsername "etcd-password" $c.etcdPassword "admin-token-hash" $c.adminTokenHash "test-token" $c.testToken }}
{{- if $v }}
{{ $key }}: {{ $v | b64enc | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* herald.secretEnv: one env entry from the credentials Secret; (dict "ctx" $ "name" "HERALD_X" "key" "x" "optional" true). */}}
{{- define "herald.secretEnv" -}}
{{- $secret := include "herald.secretName" .ctx -}}
{{- if $secret }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .key }}
      optional: {{ .optional }}
{{- end }}
{{- end -}}

{{/* herald.podEnv: the environment every Herald container shares. */}}
{{- define "herald.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "herald.resourceAttributes" . | quote }}
{{- if or .Values.backendCA.secretName .Values.backendCA.configMapName }}
# Go reads extra CAs from these directories besides the system ones.
- name: SSL_CERT_DIR
  value: /etc/ssl/certs:/etc/herald/backend-ca
{{- end }}
{{- end -}}

{{- define "herald.resourceAttributes" -}}
{{- $attrs := list "k8s.namespace.name=$(POD_NAMESPACE)" "k8s.pod.name=$(POD_NAME)" -}}
{{- range $k, $v := .Values.telemetry.resourceAttributes -}}
{{- $attrs = append $attrs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $attrs -}}
{{- end -}}

{{/* herald.backendCAVolume and herald.backendCAMount: the private CA for NATS, Redis and etcd. */}}
{{- define "herald.backendCAVolume" -}}
{{- if .Values.backendCA.secretName }}
- name: backend-ca
  secret:
    secretName: {{ .Values.backendCA.secretName }}
    items:
      - key: {{ .Values.backendCA.key }}
        path: backend-ca.pem
{{- else if .Values.backendCA.configMapName }}
- name: backend-ca
  configMap:
    name: {{ .Values.backendCA.configMapName }}
    items:
      - key: {{ .Values.backendCA.key }}
        path: backend-ca.pem
{{- end }}
{{- end -}}

{{- define "herald.backendCAMount" -}}
{{- if or .Values.backendCA.secretName .Values.backendCA.configMapName }}
- name: backend-ca
  mountPath: /etc/herald/backend-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* herald.natsFromSecret: "true" when the NATS URL comes from the credentials Secret. */}}
{{- define "herald.natsFromSecret" -}}
{{- if or .Values.nats.urlFromSecret .Values.credentials.natsURL }}true{{ end -}}
{{- end -}}

{{/* herald.natsURLArg: the NATS URL as a flag, unless it comes from the Secret. */}}
{{- define "herald.natsURLArg" -}}
{{- if not (include "herald.natsFromSecret" .) }}
- --nats-url={{ .Values.nats.url }}
{{- end }}
{{- end -}}

{{- define "herald.natsURLEnv" -}}
{{- if include "herald.natsFromSecret" . }}
{{- include "herald.secretEnv" (dict "ctx" . "name" "HERALD_NATS_URL" "key" "nats-url" "optional" false) }}
{{- end }}
{{- end -}}

{{/* herald.redisEnv: Redis credentials, when a credentials Secret exists. */}}
{{- define "herald.redisEnv" -}}
{{- include "herald.secretEnv" (dict "ctx" . "name" "HERALD_REDIS_USERNAME" "key" "redis-username" "optional" true) }}
{{- include "herald.secretEnv" (dict "ctx" . "name" "HERALD_REDIS_PASSWORD" "key" "redis-password" "optional" true) }}
{{- include "herald.secretEnv" (dict "ctx" . "name" "HERALD_REDIS_SENTINEL_PASSWORD" "key" "redis-sentinel-password" "optional" true) }}
{{- end -}}

{{- define "herald.etcdEnv" -}}
{{- include "herald.secretEnv" (dict "ctx" . "name" "HERALD_ETCD_USERNAME" "key" "etcd-username" "optional" true) }}
{{- include "herald.secretEnv" (dict "ctx" . "name" "HERALD_ETCD_PASSWORD" "key" "etcd-password" "optional" true) }}
{{- end -}}

{{/* herald.podSpecCommon: service account, security context and scheduling; (dict "ctx" $ "c" .Values.edge). */}}
{{- define "herald.podSpecCommon" -}}
serviceAccountName: {{ include "herald.serviceAccountName" .ctx }}
automountServiceAccountToken: {{ .ctx.Values.serviceAccount.automountToken }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .ctx.Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with .c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* herald.podAnnotations: pods roll when the configuration or inline
credentials change; Prometheus finds their ops port. Call with (dict "ctx" $ "c" .Values.edge). */}}
{{- define "herald.podAnnotations" -}}
checksum/config: {{ include (print .ctx.Template.BasePath "/configmap.yaml") .ctx | sha256sum }}
checksum/credentials: {{ include "herald.secretData" .ctx | sha256sum }}
{{- if .ctx.Values.telemetry.prometheusPodAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .c.ports.ops | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .c.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* herald.validate fails the rendering on values the schema cannot relate. */}}
{{- define "herald.validate" -}}
{{- $a := .Values.edge.autoscaling -}}
{{- if and .Values.credentials.existingSecret (include "herald.secretData" .) -}}
{{- fail (printf "credentials.existingSecret (%s) and inline credentials (credentials.natsURL, .redisPassword, ...) are both set: the inline ones would be ignored; put them in the Secret, or unset existingSecret" .Values.credentials.existingSecret) -}}
{{- end -}}
{{- if and .Values.nats.urlFromSecret (not (include "herald.secretName" .)) -}}
{{- fail "nats.urlFromSecret needs credentials.natsURL or credentials.existingSecret (key nats-url)" -}}
{{- end -}}
{{- if $a.enabled -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "edge.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $a.minReplicas $a.maxReplicas) -}}
{{- end -}}
{{- if not (and .Values.edge.resources.requests .Values.edge.resources.requests.cpu) -}}
{{- fail "edge.autoscaling on CPU needs edge.resources.requests.cpu" -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.edge.authenticated) (not .Values.edge.anonymousTenant) -}}
{{- fail "edge.authenticated=false without edge.anonymousTenant admits no client" -}}
{{- end -}}
{{- if and .Values.edge.tls.clientCASecretName (not .Values.edge.tls.secretName) -}}
{{- fail "edge.tls.clientCASecretName needs edge.tls.secretName" -}}
{{- end -}}
{{- if and .Values.admin.tls.clientCASecretName (not .Values.admin.tls.secretName) -}}
{{- fail "admin.tls.clientCASecretName needs admin.tls.secretName" -}}
{{- end -}}
{{- if and .Values.backendCA.secretName .Values.backendCA.configMapName -}}
{{- fail "set backendCA.secretName or backendCA.configMapName, not both" -}}
{{- end -}}
{{- end -}}
