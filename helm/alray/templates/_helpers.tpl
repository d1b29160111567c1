{{/* Chart name, truncated to 63 characters (a DNS label). */}}
{{- define "alray.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-alray, or the release name when it already contains the chart name.
KubeRay derives Service names from it (`<name>-head-svc`), so it stays under 50 characters. */}}
{{- define "alray.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "alray.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: every object of one release. */}}
{{- define "alray.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alray.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "alray.labels" -}}
helm.sh/chart: {{ include "alray.chart" . }}
{{ include "alray.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: alray
{{- end }}

{{- define "alray.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "alray.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: the operator's own, or the chart's. */}}
{{- define "alray.secretName" -}}
{{- default (printf "%s-secrets" (include "alray.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* The Serve service KubeRay keeps pointed at the cluster that serves (stable across
upgrades); the Ingress and the ServiceMonitor use it. */}}
{{- define "alray.serveServiceName" -}}
{{- printf "%s-serve" (include "alray.fullname" .) }}
{{- end }}

{{- define "alray.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* ServiceSettings fields: the serveConfigV2 args of build_app (no secrets: tokens and the
signing key reach the pods through the Secret). */}}
{{- define "alray.serviceSettings" -}}
service_root: {{ .Values.alray.serviceRoot | quote }}
data_roots: {{ join "," .Values.alray.dataRoots | quote }}
{{- with .Values.alray.publicUrl }}
public_url: {{ . | quote }}
{{- end }}
url_expiry_s: {{ .Values.alray.urlExpirySeconds | int }}
max_page: {{ .Values.alray.maxPage | int }}
max_body_bytes: {{ .Values.alray.maxBodyBytes | int }}
{{- end }}

{{/* The Serve config: one application, alray's builder, replica autoscaling. */}}
{{- define "alray.serveConfig" -}}
http_options:
  host: 0.0.0.0
  port: {{ .Values.serve.port | int }}
applications:
  - name: alray
    route_prefix: /
    import_path: alray.service.app:build_app
    args:
      {{- include "alray.serviceSettings" . | nindent 6 }}
    deployments:
      - name: alray
        max_ongoing_requests: {{ .Values.serve.maxOngoingRequests | int }}
        autoscaling_config:
          min_replicas: {{ .Values.serve.minReplicas | int }}
          max_replicas: {{ .Values.serve.maxReplicas | int }}
          target_ongoing_requests: {{ .Values.serve.targetOngoingRequests | int }}
        ray_actor_options:
          num_cpus: {{ .Values.serve.replicaCpus }}
{{- end }}

{{/* Environment of every Ray container: non-secret settings from the env ConfigMap, secrets
from the Secret (tokens required; signing key and S3 keys optional: workload identity). */}}
{{- define "alray.env" -}}
- name: ALRAY_API_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ include "alray.secretName" . }}
      key: ALRAY_API_TOKENS
{{- range list "ALRAY_METRICS_TOKEN" "ALRAY_SIGNING_KEY" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "alray.secretName" $ }}
      key: {{ . }}
      optional: true
{{- end }}
{{- with .Values.alray.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "alray.envFrom" -}}
- configMapRef:
    name: {{ include "alray.fullname" . }}-env
{{- end }}

{{/* Writable folders of a Ray pod whose root filesystem is read-only. */}}
{{- define "alray.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSize }}
- name: home
  emptyDir:
    sizeLimit: 1Gi
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.sharedMemorySize }}
- name: config
  configMap:
    name: {{ include "alray.fullname" . }}-config
{{- end }}

{{- define "alray.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/ray
- name: dshm
  mountPath: /dev/shm
- name: config
  mountPath: /etc/alray
  readOnly: true
{{- end }}

{{/* Container ports of a Ray pod (names KubeRay and the monitors use). */}}
{{- define "alray.workerPorts" -}}
- name: serve
  containerPort: {{ .Values.serve.port | int }}
  protocol: TCP
- name: metrics
  containerPort: 8080
  protocol: TCP
{{- end }}

{{/* Render-time checks: what the schema cannot say, said with the value to change. */}}
{{- define "alray.validate" -}}
{{- $v := .Values }}
{{- if and (not $v.secrets.existingSecret) (not (trim $v.secrets.apiTokens)) }}
{{- fail "secrets: set secrets.existingSecret to a Secret holding ALRAY_API_TOKENS, or secrets.apiTokens (e.g. admin:<random>,label:<random>); the API refuses to run without tokens" }}
{{- end }}
{{- if and $v.secrets.existingSecret (or $v.secrets.apiTokens $v.secrets.metricsToken $v.secrets.signingKey $v.secrets.awsAccessKeyId $v.secrets.awsSecretAccessKey) }}
{{- fail (printf "secrets: secrets.existingSecret=%q is set, so secrets.apiTokens, metricsToken, signingKey and the AWS keys must be empty (put them in that Secret)" $v.secrets.existingSecret) }}
{{- end }}
{{- if and (or $v.secrets.awsAccessKeyId $v.secrets.awsSecretAccessKey) (not (and $v.secrets.awsAccessKeyId $v.secrets.awsSecretAccessKey)) }}
{{- fail "secrets: set both secrets.awsAccessKeyId and secrets.awsSecretAccessKey, or neither (workload identity)" }}
{{- end }}
{{- range $item := splitList "," $v.secrets.apiTokens }}
{{- $t := trim $item }}
{{- if and $t (regexMatch "^(admin|label|read):$" $t) }}
{{- fail (printf "secrets.apiTokens: %q has a scope but no token (use scope:token)" $t) }}
{{- end }}
{{- end }}
{{- if not (or $v.cpuWorkers.enabled $v.gpuWorkers.enabled) }}
{{- fail "cpuWorkers.enabled and gpuWorkers.enabled are both false: the head runs no tasks (head.rayStartParams num-cpus 0), so nothing could run; enable a worker group" }}
{{- end }}
{{- range $g := list "cpuWorkers" "gpuWorkers" }}
{{- $w := index $v $g }}
{{- if $w.enabled }}
{{- if gt (int $w.minReplicas) (int $w.maxReplicas) }}
{{- fail (printf "%s.minReplicas=%d is greater than %s.maxReplicas=%d" $g (int $w.minReplicas) $g (int $w.maxReplicas)) }}
{{- end }}
{{- if or (lt (int $w.replicas) (int $w.minReplicas)) (gt (int $w.replicas) (int $w.maxReplicas)) }}
{{- fail (printf "%s.replicas=%d must lie between minReplicas=%d and maxReplicas=%d" $g (int $w.replicas) (int $w.minReplicas) (int $w.maxReplicas)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.cpuWorkers.enabled $v.gpuWorkers.enabled (eq $v.cpuWorkers.groupName $v.gpuWorkers.groupName) }}
{{- fail (printf "cpuWorkers.groupName and gpuWorkers.groupName are both %q: worker groups need distinct names" $v.cpuWorkers.groupName) }}
{{- end }}
{{- if gt (int $v.serve.minReplicas) (int $v.serve.maxReplicas) }}
{{- fail (printf "serve.minReplicas=%d is greater than serve.maxReplicas=%d" (int $v.serve.minReplicas) (int $v.serve.maxReplicas)) }}
{{- end }}
{{- if and $v.gcsFaultTolerance.enabled (not $v.gcsFaultTolerance.redisAddress) }}
{{- fail "gcsFaultTolerance.enabled is true but gcsFaultTolerance.redisAddress is empty: give the external Redis as host:port" }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.ingress.host) }}
{{- fail "ingress.enabled is true but ingress.host is empty" }}
{{- end }}
{{- range $name, $p := $v.alray.projects }}
{{- $pool := dig "pool" "uri" "" $p }}
{{- $ok := false }}
{{- range $root := $v.alray.dataRoots }}
{{- if hasPrefix $root $pool }}{{ $ok = true }}{{ end }}
{{- end }}
{{- if not $ok }}
{{- fail (printf "alray.projects.%s.pool.uri=%q is not under any of alray.dataRoots %v: the service would refuse it (403)" $name $pool $v.alray.dataRoots) }}
{{- end }}
{{- with (dig "model" "weights_uri" "" $p) }}
{{- $w := . }}
{{- $wok := false }}
{{- range $root := $v.alray.dataRoots }}
{{- if hasPrefix $root $w }}{{ $wok = true }}{{ end }}
{{- end }}
{{- if not $wok }}
{{- fail (printf "alray.projects.%s.model.weights_uri=%q is not under any of alray.dataRoots %v: the service would refuse it (403)" $name $w $v.alray.dataRoots) }}
{{- end }}
{{- end }}
{{- if (dig "storage" "uri" "" $p) }}
{{- fail (printf "alray.projects.%s.storage.uri: leave it out; the service keeps each project's store under alray.serviceRoot" $name) }}
{{- end }}
{{- if and (not $v.gpuWorkers.enabled) (or (gt (float64 (dig "acquisition" "actor_gpus" 0 $p)) 0.0) (dig "train" "use_gpu" false $p)) }}
{{- fail (printf "alray.projects.%s asks for GPUs (acquisition.actor_gpus or train.use_gpu) but gpuWorkers.enabled is false: enable the GPU worker group or use CPUs" $name) }}
{{- end }}
{{- end }}
{{- end }}
