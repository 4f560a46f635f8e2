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
  kinds          its API groups, the plural names of its kinds there (CRDs and RBAC), and
                 of those the ones with a status
  reads          RBAC rules beyond its own kinds, events and leader election
  clusterAdmin   bound to cluster-admin instead of a role of its own
  lockdown       which lockdown values it takes
  artifactStorage  serves artifacts: a storage volume and port, the artifact Service
  servers        its own servers: the Service in front (port 80), the container port's name
                 and number, the flag of the listen address, and the NetworkPolicy that lets
                 every namespace in (networkPolicy), if any
  eventsEndpoint takes the other controllers' events: they get --events-addr naming its first
                 server's Service
  env            environment variables of its container beyond the runtime's
*/}}
{{- define "weir.components" -}}
- name: source-controller
  values: sourceController
  package: source
  kinds:
    - group: source.toolkit.fluxcd.io
      plurals: [gitrepositories, ocirepositories, buckets, helmrepositories, helmcharts]
      statuses: [gitrepositories, ocirepositories, buckets, helmrepositories, helmcharts]
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
  servers: []
  eventsEndpoint: false
  env: []
- name: kustomize-controller
  values: kustomizeController
  package: kustomize
  kinds:
    - group: kustomize.toolkit.fluxcd.io
      plurals: [kustomizations]
      statuses: [kustomizations]
  reads: []
  clusterAdmin: true
  lockdown: [noCrossNamespaceRefs, noRemoteBases, defaultServiceAccount]
  artifactStorage: false
  servers: []
  eventsEndpoint: false
  env: []
- name: helm-controller
  values: helmController
  package: helm
  kinds:
    - group: helm.toolkit.fluxcd.io
      plurals: [helmreleases]
      statuses: [helmreleases]
  # cluster-admin covers what it reads (valuesFrom, kubeConfig) and the HelmCharts it writes.
  reads: []
  clusterAdmin: true
  # Charts have no remote bases.
  lockdown: [noCrossNamespaceRefs, defaultServiceAccount]
  artifactStorage: false
  servers: []
  eventsEndpoint: false
  # Helm reads its homes from the environment at start, in the pod's /tmp emptyDir.
  env:
    - name: HELM_CACHE_HOME
      value: /tmp/helm/cache
    - name: HELM_CONFIG_HOME
      value: /tmp/helm/config
    - name: HELM_DATA_HOME
      value: /tmp/helm/data
    - name: HELM_PLUGINS
      value: /tmp/helm/data/plugins
- name: notification-controller
  values: notificationController
  package: notification
  kinds:
    # Alerts and Providers have no status (Flux's v1beta3).
    - group: notification.toolkit.fluxcd.io
      plurals: [receivers, alerts, providers]
      statuses: [receivers]
  reads:
    # A Receiver's token, a Provider's credentials, certificates and proxy: read one at a
    # time, never listed.
    - apiGroups: [""]
      resources: [secrets]
      verbs: [get]
    # A Receiver asks for a reconcile of the objects it names (an annotation, patched); both
    # it and the Alerts select objects by labels, and an Alert reads the object of an event.
    - apiGroups:
        - source.toolkit.fluxcd.io
        - kustomize.toolkit.fluxcd.io
        - helm.toolkit.fluxcd.io
        - image.toolkit.fluxcd.io
        - source.extensions.fluxcd.io
      resources: ["*"]
      verbs: [get, list, watch, patch]
  clusterAdmin: false
  lockdown: [noCrossNamespaceRefs]
  artifactStorage: false
  servers:
    - service: notification-controller
      portName: http
      port: 9090
      flag: --events-addr
      networkPolicy: ""
    - service: webhook-receiver
      portName: http-webhook
      port: 9292
      flag: --receiver-addr
      networkPolicy: allow-webhooks
  eventsEndpoint: true
  env: []
- name: image-automation-controller
  values: imageAutomationController
  package: image_automation
  kinds:
    - group: image.toolkit.fluxcd.io
      plurals: [imagerepositories, imagepolicies, imageupdateautomations]
      statuses: [imagerepositories, imagepolicies, imageupdateautomations]
  reads:
    # Registry credentials and TLS, Git credentials, signing keys and Git host tokens: read
    # one at a time, never listed.
    - apiGroups: [""]
      resources: [secrets]
      verbs: [get]
    # An ImageRepository's serviceAccountName, for its imagePullSecrets.
    - apiGroups: [""]
      resources: [serviceaccounts]
      verbs: [get]
    # Each ImageRepository's full tag list, in a ConfigMap of its own.
    - apiGroups: [""]
      resources: [configmaps]
      verbs: [get, create, update, delete]
    # The GitRepository an automation clones and pushes to, watched.
    - apiGroups: [source.toolkit.fluxcd.io]
      resources: [gitrepositories]
      verbs: [get, list, watch]
    # An ImageRepository's accessFrom selects the namespaces by their labels.
    - apiGroups: [""]
      resources: [namespaces]
      verbs: [get]
  clusterAdmin: false
  lockdown: [noCrossNamespaceRefs]
  artifactStorage: false
  servers: []
  eventsEndpoint: false
  env: []
{{- end }}

{{/* The components whose create value is true, as a YAML list (use with fromYamlArray). */}}
{{- define "weir.enabled" -}}
{{- $enabled := list }}
{{- range (include "weir.components" . | fromYamlArray) }}
{{- if (index $.Values .values).create }}
{{- $enabled = append $enabled . }}
{{- end }}
{{- end }}
{{- toYaml $enabled }}
{{- end }}

{{/* Where the controllers send their events: the events Service by its full name, as weir
install names it; empty when no enabled component takes events. */}}
{{- define "weir.eventsAddr" -}}
{{- range (include "weir.enabled" . | fromYamlArray) }}
{{- if .eventsEndpoint }}
{{- printf "http://%s.$(RUNTIME_NAMESPACE).svc.%s./" (index .servers 0).service $.Values.clusterDomain }}
{{- end }}
{{- end }}
{{- end }}
