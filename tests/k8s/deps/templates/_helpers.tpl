{{- define "deps.image" -}}
{{- $r := .ctx.Values.image.registry -}}
{{- printf "%s%s:%s" (ternary "" (printf "%s/" (trimSuffix "/" $r)) (empty $r)) .image.name .image.tag -}}
{{- end -}}

{{- define "deps.pod" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile: {type: RuntimeDefault}
automountServiceAccountToken: false
enableServiceLinks: false
{{- end -}}

{{- define "deps.container" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
resources:
  requests: {cpu: 50m, memory: 64Mi}
  limits: {memory: 512Mi}
{{- end -}}

{{- define "deps.volumes" -}}
- name: data
  emptyDir: {}
{{- with .Values.tls.secretName }}
- name: tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- end -}}

{{- define "deps.mounts" -}}
- name: data
  mountPath: /data
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: /tls
  readOnly: true
{{- end }}
{{- end -}}
