{{/* Names, labels and the pieces shared by several templates. */}}

{{- define "mcp-fleet-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-fleet-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-fleet-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-fleet-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "mcp-fleet-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mcp-fleet-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcp-fleet
{{- end -}}

{{- define "mcp-fleet-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcp-fleet-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image renders repository:tag or repository@digest; the tag defaults to appVersion. */}}
{{- define "mcp-fleet-operator.image" -}}
{{- $img := index . 0 -}}{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* namespacedMode is "true" when watchNamespaces is set. */}}
{{- define "mcp-fleet-operator.namespacedMode" -}}
{{- if .Values.watchNamespaces }}true{{ end -}}
{{- end -}}

{{/*
clusterScopedResources lists, as group/resource, the resources in files/rbac/role.yaml that
are not namespaced. In namespaced mode these stay in the (minimal) ClusterRole; everything
else becomes a Role per watched namespace. test/packaging checks this list against the API
server's discovery, so a new cluster-scoped rule cannot silently land in a Role.
*/}}
{{- define "mcp-fleet-operator.clusterScopedResources" -}}
- apiextensions.k8s.io/customresourcedefinitions
- /namespaces
- cert-manager.io/clusterissuers
- mcp.mcpfleet.dev/mcpserverpolicies
- mcp.mcpfleet.dev/mcpserverpolicies/status
{{- end -}}

{{/*
managerRules splits the rules of files/rbac/role.yaml (a copy of config/rbac/role.yaml,
which controller-gen writes from the +kubebuilder:rbac markers) into {cluster: [...],
namespaced: [...]}, keeping groups, resources and verbs exactly. Rules with resourceNames or
nonResourceURLs are kept whole in the cluster list.
*/}}
{{- define "mcp-fleet-operator.managerRules" -}}
{{- $role := .Files.Get "files/rbac/role.yaml" | fromYaml -}}
{{- $clusterScoped := include "mcp-fleet-operator.clusterScopedResources" . | fromYamlArray -}}
{{- $cluster := list -}}
{{- $namespaced := list -}}
{{- range $rule := $role.rules -}}
{{- if or $rule.nonResourceURLs $rule.resourceNames -}}
{{- $cluster = append $cluster $rule -}}
{{- else -}}
{{- range $group := $rule.apiGroups -}}
{{- $c := list -}}{{- $n := list -}}
{{- range $res := $rule.resources -}}
{{- if has (printf "%s/%s" $group $res) $clusterScoped -}}
{{- $c = append $c $res -}}
{{- else -}}
{{- $n = append $n $res -}}
{{- end -}}
{{- end -}}
{{- if $c -}}{{- $cluster = append $cluster (dict "apiGroups" (list $group) "resources" $c "verbs" $rule.verbs) -}}{{- end -}}
{{- if $n -}}{{- $namespaced = append $namespaced (dict "apiGroups" (list $group) "resources" $n "verbs" $rule.verbs) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- dict "cluster" $cluster "namespaced" $namespaced | toYaml -}}
{{- end -}}

{{/* caBootstrapEnabled is "true" when the self-signed CA objects should be rendered. */}}
{{- define "mcp-fleet-operator.caBootstrapEnabled" -}}
{{- $mode := .Values.caBootstrap.create -}}
{{- if or (eq $mode "always") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "cert-manager.io/v1/ClusterIssuer")) -}}
true
{{- end -}}
{{- end -}}

{{/* webhookEnabled is "true" when the admission webhook objects and wiring are rendered. */}}
{{- define "mcp-fleet-operator.webhookEnabled" -}}
{{- $mode := toString .Values.webhook.enabled -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "cert-manager.io/v1/Certificate")) -}}
true
{{- end -}}
{{- end -}}

{{- define "mcp-fleet-operator.webhookSecret" -}}
{{- include "mcp-fleet-operator.fullname" . }}-webhook-cert
{{- end -}}

{{/* The manager's --webhook-cert-dir, where the serving certificate's Secret is mounted. */}}
{{- define "mcp-fleet-operator.webhookCertDir" -}}
/var/run/mcp-fleet/webhook-certs
{{- end -}}
