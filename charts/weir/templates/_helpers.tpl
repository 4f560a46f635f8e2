{{/*
The labels of every object, as weir install gives them (weir/bundle.py): part-of, instance (the
namespace: weir check and weir uninstall find an install by them), version, and the
component's name when one is given. Called with (dict "context" $ "component" NAME).
*/}}
{{- define "weir.labels" -}}
app.kubernetes.io/part-of: weir
app.kubernetes.io/instance: {{ .context.Release.Namespace | quote }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/*
The controllers, in the order weir install lays them out (COMPONENTS in weir/bundle.py):
  values         the key of its values (create, resources)
  package        the container runs `python -m <package>`
  kinds          its API groups and the plural names of its kinds there (CRDs and RBAC)
  reads          RBAC rules beyond its own kinds, events and leader election
  clusterAdmin   bound to cluster-admin instead of a role of its own
  lockdown       which lockdown values it takes
  artifactStorage  serves artifacts: a storage volume and port, the artifact Service
*/}}
{{- define "weir.components" -}}
- name: source-controller
  values: sourceController
  package: source
  kinds:
    - group: source.toolkit.fluxcd.io
      plurals: [gitrepositories, ocirepositories, buckets]
  reads:
    # The Secrets a source names, read one at a time, never listed.
    - apiGroups: [""]
      resources: [secrets]
      verbs: [get]
    # An OCIRepository's serviceAccountName, for its imagePullSecrets.
    - apiGroups: [""]
      resources: [serviceaccounts]
      verbs: [get]
  clusterAdmin: false
  lockdown: []
  artifactStorage: true
- name: kustomize-controller
  values: kustomizeController
  package: kustomize
  kinds:
    - group: kustomize.toolkit.fluxcd.io
      plurals: [kustomizations]
  reads: []
  clusterAdmin: true
  lockdown: [noCrossNamespaceRefs, noRemoteBases, defaultServiceAccount]
  artifactStorage: false
{{- end }}

{{/* The components whose create value is true, as a YAML list (use with fromYamlArray). */}}
{{- define "weir.enabled" -}}
{{- range tuple "helmController" "notificationController" "imageAutomationController" }}
{{- if (index $.Values . | default dict).create }}
{{- fail (printf "%s.create: weir has no such controller yet" .) }}
{{- end }}
{{- end }}
{{- $enabled := list }}
{{- range (include "weir.components" . | fromYamlArray) }}
{{- if (index $.Values .values).create }}
{{- $enabled = append $enabled . }}
{{- end }}
{{- end }}
{{- toYaml $enabled }}
{{- end }}
