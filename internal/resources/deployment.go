package resources

import (
	"fmt"
	"path"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

const (
	volRuntimeBin = "runtime-bin"
	volTmp        = "tmp"
	volConfig     = "runtime-config"
	volTLS        = "tls"
	volClientCA   = "client-ca"
	volAuth       = "auth"
	volAPIKeys    = "api-keys"

	containerServer  = "server"
	containerRuntime = "mcp-runtime"
	containerInstall = "install-runtime"
)

// Deployment runs the server behind the runtime. stdio: an init container copies the
// runtime binary into an emptyDir and the server container runs
// `mcp-runtime serve … -- <command>`. http: the runtime is a sidecar on the public port and
// the server listens on localhost. Pod and containers meet Pod Security "restricted".
// configHash rolls the pods when the runtime config or auth material changes.
func Deployment(s *mcpv1alpha1.MCPServer, o Options, configHash string) (*appsv1ac.DeploymentApplyConfiguration, error) {
	sp := s.Spec
	podLabels := map[string]string{}
	for k, v := range sp.PodLabels {
		podLabels[k] = v
	}
	for k, v := range Labels(s) {
		podLabels[k] = v
	}
	podAnnotations := map[string]string{}
	for k, v := range sp.PodAnnotations {
		podAnnotations[k] = v
	}
	podAnnotations[AnnotationConfigHash] = configHash

	serveArgs := []string{"serve", "--config", path.Join(ConfigDir, config.FileName)}
	runtimeMounts := runtimeVolumeMounts(s)
	ports := []*corev1ac.ContainerPortApplyConfiguration{
		corev1ac.ContainerPort().WithName(PortNameMCP).WithContainerPort(endpointPort(s)).WithProtocol(corev1.ProtocolTCP),
		corev1ac.ContainerPort().WithName(PortNameMetrics).WithContainerPort(metricsPort(s)).WithProtocol(corev1.ProtocolTCP),
	}

	server := corev1ac.Container().
		WithName(containerServer).
		WithImage(sp.Image).
		WithSecurityContext(restrictedContainer()).
		WithVolumeMounts(corev1ac.VolumeMount().WithName(volTmp).WithMountPath("/tmp"))
	if sp.ImagePullPolicy != "" {
		server = server.WithImagePullPolicy(sp.ImagePullPolicy)
	}
	if err := withUserContainerFields(server, sp); err != nil {
		return nil, err
	}

	var containers []*corev1ac.ContainerApplyConfiguration
	var initContainers []*corev1ac.ContainerApplyConfiguration
	switch sp.Transport {
	case mcpv1alpha1.TransportHTTP:
		server = server.WithCommand(sp.Command...).WithArgs(sp.Args...)
		runtime := corev1ac.Container().
			WithName(containerRuntime).
			WithImage(o.RuntimeImage).
			WithArgs(serveArgs...).
			WithPorts(ports...).
			WithSecurityContext(restrictedContainer()).
			WithVolumeMounts(runtimeMounts...).
			WithReadinessProbe(probe("/readyz", 2)).
			WithLivenessProbe(probe("/healthz", 3))
		if err := withRuntimeResources(runtime, sp); err != nil {
			return nil, err
		}
		withGoMemLimit(runtime)
		containers = append(containers, runtime, server)
	default:
		command := append([]string{RuntimeBinary}, serveArgs...)
		command = append(append(command, "--"), sp.Command...)
		server = server.
			WithCommand(command...).
			WithArgs(sp.Args...).
			WithPorts(ports...).
			WithVolumeMounts(runtimeMounts...).
			WithVolumeMounts(corev1ac.VolumeMount().WithName(volRuntimeBin).WithMountPath(RuntimeBinDir).WithReadOnly(true)).
			WithReadinessProbe(probe("/readyz", 2)).
			WithLivenessProbe(probe("/healthz", 3))
		install := corev1ac.Container().
			WithName(containerInstall).
			WithImage(o.RuntimeImage).
			WithArgs("install", RuntimeBinDir).
			WithSecurityContext(restrictedContainer()).
			WithVolumeMounts(corev1ac.VolumeMount().WithName(volRuntimeBin).WithMountPath(RuntimeBinDir))
		if err := withRuntimeResources(install, sp); err != nil {
			return nil, err
		}
		initContainers = append(initContainers, install)
		containers = append(containers, server)
	}

	pod := corev1ac.PodSpec().
		WithServiceAccountName(s.Name).
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(NonRootUID).
			WithRunAsGroup(NonRootUID).
			WithFSGroup(NonRootUID).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithInitContainers(initContainers...).
		WithContainers(containers...).
		WithVolumes(volumes(s)...)
	if sp.Transport != mcpv1alpha1.TransportHTTP {
		// The runtime is the container's PID 1 and not an init: with a shared process
		// namespace the pod's pause process reaps what the server's children orphan. The
		// stdio pod has one container, so nothing else becomes visible.
		pod = pod.WithShareProcessNamespace(true)
	}
	if len(sp.NodeSelector) > 0 {
		pod = pod.WithNodeSelector(sp.NodeSelector)
	}
	if sp.PriorityClassName != "" {
		pod = pod.WithPriorityClassName(sp.PriorityClassName)
	}
	if err := withScheduling(pod, sp); err != nil {
		return nil, err
	}

	return appsv1ac.Deployment(DeploymentName(s), s.Namespace).
		WithLabels(Labels(s)).
		WithOwnerReferences(OwnerReference(s)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(replicas(s)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(s))).
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromInt32(1)))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(podLabels).
				WithAnnotations(podAnnotations).
				WithSpec(pod))), nil
}

// restrictedContainer meets Pod Security "restricted" and adds a read-only root FS.
func restrictedContainer() *corev1ac.SecurityContextApplyConfiguration {
	return corev1ac.SecurityContext().
		WithAllowPrivilegeEscalation(false).
		WithReadOnlyRootFilesystem(true).
		WithRunAsNonRoot(true).
		WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
		WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))
}

func probe(p string, failures int32) *corev1ac.ProbeApplyConfiguration {
	return corev1ac.Probe().
		WithHTTPGet(corev1ac.HTTPGetAction().WithPath(p).WithPort(intstr.FromString(PortNameMetrics))).
		WithPeriodSeconds(5).
		WithTimeoutSeconds(2).
		WithFailureThreshold(failures)
}

func runtimeVolumeMounts(s *mcpv1alpha1.MCPServer) []*corev1ac.VolumeMountApplyConfiguration {
	m := []*corev1ac.VolumeMountApplyConfiguration{
		corev1ac.VolumeMount().WithName(volConfig).WithMountPath(ConfigDir).WithReadOnly(true),
	}
	if !s.Spec.TLS.InsecureDisabled {
		m = append(m, corev1ac.VolumeMount().WithName(volTLS).WithMountPath(TLSDir).WithReadOnly(true))
		if s.Spec.TLS.ClientCASecretRef != nil {
			m = append(m, corev1ac.VolumeMount().WithName(volClientCA).WithMountPath(ClientCADir).WithReadOnly(true))
		}
	}
	if s.Spec.Auth.InsecureAnonymous {
		return m
	}
	m = append(m, corev1ac.VolumeMount().WithName(volAuth).WithMountPath(AuthDir).WithReadOnly(true))
	for i, p := range s.Spec.Auth.JWT {
		if p.PublicKeySecretRef != nil {
			m = append(m, corev1ac.VolumeMount().WithName(jwtVolume(i)).WithMountPath(path.Join(JWTKeysDir, strconv.Itoa(i))).WithReadOnly(true))
		}
	}
	if s.Spec.Auth.APIKeys != nil {
		m = append(m, corev1ac.VolumeMount().WithName(volAPIKeys).WithMountPath(APIKeysDir).WithReadOnly(true))
	}
	return m
}

func jwtVolume(i int) string { return fmt.Sprintf("jwt-%d", i) }

func volumes(s *mcpv1alpha1.MCPServer) []*corev1ac.VolumeApplyConfiguration {
	const readOnly = int32(0o440) // readable by the pod's fsGroup only
	secretVolume := func(name, secret string, items ...*corev1ac.KeyToPathApplyConfiguration) *corev1ac.VolumeApplyConfiguration {
		src := corev1ac.SecretVolumeSource().WithSecretName(secret).WithDefaultMode(readOnly)
		if len(items) > 0 {
			src = src.WithItems(items...)
		}
		return corev1ac.Volume().WithName(name).WithSecret(src)
	}
	v := []*corev1ac.VolumeApplyConfiguration{
		corev1ac.Volume().WithName(volTmp).WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithSizeLimit(resourceQuantity("64Mi"))),
		corev1ac.Volume().WithName(volConfig).WithConfigMap(corev1ac.ConfigMapVolumeSource().WithName(ConfigMapName(s)).WithDefaultMode(0o444)),
	}
	if s.Spec.Transport != mcpv1alpha1.TransportHTTP {
		v = append(v, corev1ac.Volume().WithName(volRuntimeBin).WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithSizeLimit(resourceQuantity("128Mi"))))
	}
	if !s.Spec.TLS.InsecureDisabled {
		v = append(v, secretVolume(volTLS, TLSSecretName(s),
			corev1ac.KeyToPath().WithKey("tls.crt").WithPath("tls.crt"),
			corev1ac.KeyToPath().WithKey("tls.key").WithPath("tls.key")))
		if ref := s.Spec.TLS.ClientCASecretRef; ref != nil {
			v = append(v, secretVolume(volClientCA, ref.Name, corev1ac.KeyToPath().WithKey(ref.Key).WithPath("ca.crt")))
		}
	}
	if s.Spec.Auth.InsecureAnonymous {
		return v
	}
	// Only the public key and the ticket key reach the pod; the private key does not.
	v = append(v, secretVolume(volAuth, AuthSecretName(s),
		corev1ac.KeyToPath().WithKey(AuthKeyPublic).WithPath(AuthKeyPublic),
		corev1ac.KeyToPath().WithKey(AuthKeyTicketKey).WithPath(AuthKeyTicketKey)))
	for i, p := range s.Spec.Auth.JWT {
		if ref := p.PublicKeySecretRef; ref != nil {
			v = append(v, secretVolume(jwtVolume(i), ref.Name, corev1ac.KeyToPath().WithKey(ref.Key).WithPath("key.pem")))
		}
	}
	if k := s.Spec.Auth.APIKeys; k != nil {
		v = append(v, secretVolume(volAPIKeys, k.SecretName))
	}
	return v
}

func withUserContainerFields(c *corev1ac.ContainerApplyConfiguration, sp mcpv1alpha1.MCPServerSpec) error {
	if len(sp.Env) > 0 {
		var env []*corev1ac.EnvVarApplyConfiguration
		if err := convert(sp.Env, &env); err != nil {
			return fmt.Errorf("spec.env: %w", err)
		}
		c.WithEnv(env...)
	}
	if len(sp.EnvFrom) > 0 {
		var envFrom []*corev1ac.EnvFromSourceApplyConfiguration
		if err := convert(sp.EnvFrom, &envFrom); err != nil {
			return fmt.Errorf("spec.envFrom: %w", err)
		}
		c.WithEnvFrom(envFrom...)
	}
	if len(sp.Resources.Limits) > 0 || len(sp.Resources.Requests) > 0 {
		r := corev1ac.ResourceRequirements()
		if err := convert(sp.Resources, r); err != nil {
			return fmt.Errorf("spec.resources: %w", err)
		}
		c.WithResources(r)
	}
	return nil
}

// defaultRuntimeMemoryLimit fits the runtime's default limits: 10000 connections
// (spec.rateLimit.maxConnections) held as idle WebSockets measured ~27 KiB each, ~290 MB
// in all (docs/benchmarks.md), plus room for messages in flight.
const defaultRuntimeMemoryLimit = "512Mi"

func withRuntimeResources(c *corev1ac.ContainerApplyConfiguration, sp mcpv1alpha1.MCPServerSpec) error {
	if sp.RuntimeResources == nil {
		c.WithResources(corev1ac.ResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: resourceQuantity("50m"), corev1.ResourceMemory: resourceQuantity("32Mi")}).
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: resourceQuantity(defaultRuntimeMemoryLimit)}))
		return nil
	}
	r := corev1ac.ResourceRequirements()
	if err := convert(sp.RuntimeResources, r); err != nil {
		return fmt.Errorf("spec.runtimeResources: %w", err)
	}
	c.WithResources(r)
	return nil
}

// withGoMemLimit sets GOMEMLIMIT on the runtime sidecar to 90% of the memory limit its
// resources got (none without one), so that its garbage collector works harder before the
// kernel would kill it (a connection storm leaves much garbage); spec.env reaches the
// server container only.
func withGoMemLimit(c *corev1ac.ContainerApplyConfiguration) {
	if c.Resources == nil || c.Resources.Limits == nil {
		return
	}
	limit, ok := (*c.Resources.Limits)[corev1.ResourceMemory]
	if b := limit.Value(); ok && b > 0 {
		c.WithEnv(corev1ac.EnvVar().WithName("GOMEMLIMIT").WithValue(strconv.FormatInt(b/10*9, 10)))
	}
}

func withScheduling(p *corev1ac.PodSpecApplyConfiguration, sp mcpv1alpha1.MCPServerSpec) error {
	if len(sp.Tolerations) > 0 {
		var t []*corev1ac.TolerationApplyConfiguration
		if err := convert(sp.Tolerations, &t); err != nil {
			return fmt.Errorf("spec.tolerations: %w", err)
		}
		p.WithTolerations(t...)
	}
	if sp.Affinity != nil {
		a := corev1ac.Affinity()
		if err := convert(sp.Affinity, a); err != nil {
			return fmt.Errorf("spec.affinity: %w", err)
		}
		p.WithAffinity(a)
	}
	if len(sp.TopologySpreadConstraints) > 0 {
		var t []*corev1ac.TopologySpreadConstraintApplyConfiguration
		if err := convert(sp.TopologySpreadConstraints, &t); err != nil {
			return fmt.Errorf("spec.topologySpreadConstraints: %w", err)
		}
		p.WithTopologySpreadConstraints(t...)
	}
	if len(sp.ImagePullSecrets) > 0 {
		var s []*corev1ac.LocalObjectReferenceApplyConfiguration
		if err := convert(sp.ImagePullSecrets, &s); err != nil {
			return fmt.Errorf("spec.imagePullSecrets: %w", err)
		}
		p.WithImagePullSecrets(s...)
	}
	return nil
}
