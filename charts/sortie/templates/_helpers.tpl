{{/* The base name of every object: the release name (sortie unless told otherwise). */}}
{{- define "sortie.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sortie.labels" -}}
app.kubernetes.io/name: sortie
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sortie.selector" -}}
app.kubernetes.io/name: sortie
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Whether Redis holds the shared state. */}}
{{- define "sortie.redis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret }}true{{ end -}}
{{- end -}}

{{- define "sortie.redisSecret" -}}
{{- .Values.redis.existingSecret | default (printf "%s-redis" (include "sortie.fullname" .)) -}}
{{- end -}}

{{- define "sortie.masterKeySecret" -}}
{{- .Values.masterKey.existingSecret | default (printf "%s-master-key" (include "sortie.fullname" .)) -}}
{{- end -}}

{{- define "sortie.scheme" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end -}}
{{- end -}}

{{/* The public URL: the token issuer. */}}
{{- define "sortie.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl | trimSuffix "/" -}}
{{- else if and .Values.ingress.enabled .Values.ingress.host -}}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.ingress.tlsSecretName))) .Values.ingress.host -}}
{{- else -}}
{{- printf "%s://%s.%s.svc:%v" (include "sortie.scheme" .) (include "sortie.fullname" .) .Release.Namespace .Values.service.port -}}
{{- end -}}
{{- end -}}

{{/* Values that cannot work fail here, each naming the value. */}}
{{- define "sortie.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not (include "sortie.redis" .)) -}}
{{- fail (printf "replicas=%v needs redis.url or redis.existingSecret: the embedded store serves one process only, several replicas share their state in Redis" .Values.replicas) -}}
{{- end -}}
{{- if lt (int .Values.replicas) 1 -}}
{{- fail (printf "replicas=%v: at least 1" .Values.replicas) -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled=true needs tls.secretName: the name of a kubernetes.io/tls Secret with the server's certificate (tls.crt, tls.key)" -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) -}}
{{- fail "ingress.enabled=true needs ingress.host" -}}
{{- end -}}
{{- if and .Values.publicUrl (not (regexMatch "^https?://[^/?#]+" .Values.publicUrl)) -}}
{{- fail (printf "publicUrl %q must be an absolute http:// or https:// URL" .Values.publicUrl) -}}
{{- end -}}
{{- if and .Values.redis.url (not (regexMatch "^(redis|rediss|unix|redis\\+cluster|rediss\\+cluster)://" .Values.redis.url)) -}}
{{- fail "redis.url must start with redis://, rediss://, unix://, redis+cluster:// or rediss+cluster://" -}}
{{- end -}}
{{- end -}}
