{{/*
Names, labels and the checks every template shares. The checks here enforce what
values.schema.json cannot express (relations between two values).
*/}}

{{- define "allocation-processor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "allocation-processor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "allocation-processor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "allocation-processor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "allocation-processor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "allocation-processor.labels" -}}
helm.sh/chart: {{ include "allocation-processor.chart" . }}
{{ include "allocation-processor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: allocation
{{- end }}

{{- define "allocation-processor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "allocation-processor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "allocation-processor.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret the credentials are read from: the chart's own only when asked for. */}}
{{- define "allocation-processor.secretName" -}}
{{- if .Values.secret.create }}
{{- include "allocation-processor.fullname" . }}
{{- else }}
{{- required "secret.existingSecret: name the Secret holding DATABASE_URL (or set secret.create=true and secret.data)" .Values.secret.existingSecret }}
{{- end }}
{{- end }}

{{/*
How many partitions the consumer group shares: the partitions of each command topic times
the number of command topics (one, <prefix>.commands, when none are listed). Members beyond
it get no partition.
*/}}
{{- define "allocation-processor.partitionCap" -}}
{{- $topics := len .Values.kafka.commandTopics | int }}
{{- mul (int .Values.kafka.topics.partitions) (max 1 $topics) }}
{{- end }}

{{/*
How many replicas can each get partitions: every pod is processing.consumerThreads members
of the group.
*/}}
{{- define "allocation-processor.replicaCap" -}}
{{- div (include "allocation-processor.partitionCap" . | int) (max 1 (int .Values.processing.consumerThreads)) }}
{{- end }}

{{/* Fails the render on values that contradict each other. Included by the Deployment. */}}
{{- define "allocation-processor.validate" -}}
{{- $partitions := include "allocation-processor.partitionCap" . | int }}
{{- $threads := max 1 (int .Values.processing.consumerThreads) | int }}
{{- $cap := include "allocation-processor.replicaCap" . | int }}
{{- $of := printf "the %d partition(s) of the command topics" $partitions }}
{{- if gt $threads 1 }}{{ $of = printf "%s at %d consumer threads per pod (%d replica(s) at most)" $of $threads $cap }}{{ end }}
{{- $idle := "replicas beyond the command topics' partitions sit idle; raise kafka.topics.partitions (and the topic's partitions) first" }}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are exclusive: KEDA creates its own HorizontalPodAutoscaler" }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.maxReplicas) $cap }}
{{- fail (printf "autoscaling.maxReplicas (%d) exceeds %s: %s" (int .Values.autoscaling.maxReplicas) $of $idle) }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%d) exceeds autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- else if .Values.keda.enabled }}
{{- if gt (int .Values.keda.maxReplicaCount) $cap }}
{{- fail (printf "keda.maxReplicaCount (%d) exceeds %s: %s" (int .Values.keda.maxReplicaCount) $of $idle) }}
{{- end }}
{{- if gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount) }}
{{- fail (printf "keda.minReplicaCount (%d) exceeds keda.maxReplicaCount (%d)" (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount)) }}
{{- end }}
{{- else if gt (int .Values.replicaCount) $cap }}
{{- fail (printf "replicaCount (%d) exceeds %s: %s" (int .Values.replicaCount) $of $idle) }}
{{- end }}
{{- if and (eq .Values.avro.wireFormat "confluent") (not .Values.avro.schemaRegistryUrl) }}
{{- fail "avro.wireFormat=confluent needs avro.schemaRegistryUrl" }}
{{- end }}
{{- if .Values.secret.create }}
{{- $data := .Values.secret.data | default dict }}
{{- $need := list .Values.secret.keys.databaseUrl }}
{{- if .Values.kafka.sasl.enabled }}{{ $need = concat $need (list .Values.secret.keys.saslUsername .Values.secret.keys.saslPassword) }}{{ end }}
{{- if .Values.email.smtp.enabled }}{{ $need = append $need .Values.secret.keys.smtpUrl }}{{ end }}
{{- if .Values.http.auth.enabled }}{{ $need = append $need .Values.secret.keys.httpAuthToken }}{{ end }}
{{- range $need }}
{{- if not (hasKey $data .) }}
{{- fail (printf "secret.create=true but secret.data has no %s" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* One Secret-backed variable: NAME from the Secret's KEY, or, with secret.asFiles, NAME_FILE
naming that key's file in the mounted Secret. Takes (dict "ctx" $ "name" NAME "key" KEY). */}}
{{- define "allocation-processor.secretVar" -}}
{{- $secret := .ctx.Values.secret }}
{{- if $secret.asFiles }}
- name: {{ .name }}_FILE
  value: {{ printf "%s/%s" $secret.mountPath .key | quote }}
{{- else }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "allocation-processor.secretName" .ctx }}
      key: {{ .key }}
{{- end }}
{{- end }}

{{/* The Secret-backed variables, as EnvVar entries (never their values). */}}
{{- define "allocation-processor.secretEnv" -}}
{{- $keys := .Values.secret.keys }}
{{- include "allocation-processor.secretVar" (dict "ctx" . "name" "DATABASE_URL" "key" $keys.databaseUrl) }}
{{- if .Values.kafka.sasl.enabled }}
{{- include "allocation-processor.secretVar" (dict "ctx" . "name" "KAFKA_SASL_USERNAME" "key" $keys.saslUsername) }}
{{- include "allocation-processor.secretVar" (dict "ctx" . "name" "KAFKA_SASL_PASSWORD" "key" $keys.saslPassword) }}
{{- end }}
{{- if .Values.email.smtp.enabled }}
{{- include "allocation-processor.secretVar" (dict "ctx" . "name" "SMTP_URL" "key" $keys.smtpUrl) }}
{{- end }}
{{- if .Values.http.auth.enabled }}
{{- include "allocation-processor.secretVar" (dict "ctx" . "name" "HTTP_AUTH_TOKEN" "key" $keys.httpAuthToken) }}
{{- end }}
{{- end }}

{{/* With secret.asFiles: the Secret as a read-only volume (mode 0440, group fsGroup) and its
mount, for the processor and the migration Job. */}}
{{- define "allocation-processor.secretVolume" -}}
- name: secrets
  secret:
    secretName: {{ include "allocation-processor.secretName" . }}
    defaultMode: 288
{{- end }}
{{- define "allocation-processor.secretMount" -}}
- name: secrets
  mountPath: {{ .Values.secret.mountPath }}
  readOnly: true
{{- end }}

{{/* The pod-level settings the processor and the migration Job share. */}}
{{- define "allocation-processor.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- /* Service links would add KAFKA_PORT & co. for a Service named kafka, and every KAFKA_*
variable is handed to librdkafka as a property: keep them out. */}}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .Values.hostNetwork }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
{{- end }}
