package tokenmint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// maxObjectBytes bounds one API response (Secrets and ConfigMaps hold at most 1 MiB).
const maxObjectBytes = 4 << 20

// Cluster selects the cluster and namespace the way kubectl does.
type Cluster struct {
	// Kubeconfig is an explicit kubeconfig file. Empty: $KUBECONFIG (a list of files),
	// else ~/.kube/config, else the in-cluster service account.
	Kubeconfig string
	// Context in the kubeconfig. Empty: its current context.
	Context string
	// Namespace of the server. Empty: the context's namespace, else "default".
	Namespace string
	// UserAgent sent to the API server.
	UserAgent string
}

// RESTConfig resolves the kubeconfig and the namespace.
func (c Cluster) RESTConfig() (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.Kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{
		CurrentContext: c.Context,
		Context:        clientcmdapi.Context{Namespace: c.Namespace},
	})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the kubeconfig (set --kubeconfig, KUBECONFIG or --context): %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("finding the namespace (set -n NAMESPACE): %w", err)
	}
	if c.UserAgent != "" {
		cfg.UserAgent = c.UserAgent
	}
	return cfg, ns, nil
}

// Load reads the MCPServer named server, its auth Secret and its runtime ConfigMap with
// the kubeconfig's credentials and returns the issuer that mints its tokens (see IssuerFor).
func Load(ctx context.Context, c Cluster, server string) (*Issuer, error) {
	cfg, ns, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	in, err := ReadInputs(ctx, cfg, ns, server)
	if err != nil {
		return nil, err
	}
	return IssuerFor(in)
}

// dnsName is a Kubernetes object name or namespace (RFC 1123 subdomain).
var dnsName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// ReadInputs GETs the three objects: a missing MCPServer is an error, a missing Secret or
// ConfigMap is reported as nil in Inputs (IssuerFor explains it).
func ReadInputs(ctx context.Context, cfg *rest.Config, namespace, server string) (Inputs, error) {
	if !dnsName.MatchString(server) {
		return Inputs{}, fmt.Errorf("--server %q is not an MCPServer name (lowercase letters, digits, '-' and '.')", server)
	}
	if !dnsName.MatchString(namespace) {
		return Inputs{}, fmt.Errorf("-n %q is not a namespace name (lowercase letters, digits and '-')", namespace)
	}
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return Inputs{}, fmt.Errorf("the kubeconfig's server URL: %w", err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return Inputs{}, fmt.Errorf("building the API client from the kubeconfig: %w", err)
	}
	api := apiReader{hc: hc, base: base}
	ref := "MCPServer " + namespace + "/" + server

	var in Inputs
	found, err := api.get(ctx, &in.Server, "apis", "mcp.mcpfleet.dev", "v1alpha1", "namespaces", namespace, "mcpservers", server)
	if err != nil {
		return Inputs{}, fmt.Errorf("reading %s: %w", ref, err)
	}
	if !found {
		return Inputs{}, fail(ErrServerNotFound, "%s does not exist (list them with: kubectl get mcpservers -n %s; pick the namespace with -n)", ref, namespace)
	}

	var secret struct {
		Data map[string][]byte `json:"data"`
	}
	secretName := AuthSecretName(server)
	found, err = api.get(ctx, &secret, "api", "v1", "namespaces", namespace, "secrets", secretName)
	if err != nil {
		return Inputs{}, fmt.Errorf("reading Secret %s/%s: %w", namespace, secretName, err)
	}
	if found {
		in.SecretData = secret.Data
		if in.SecretData == nil {
			in.SecretData = map[string][]byte{}
		}
	}

	var cm struct {
		Data map[string]string `json:"data"`
	}
	cmName := ConfigMapName(server)
	found, err = api.get(ctx, &cm, "api", "v1", "namespaces", namespace, "configmaps", cmName)
	if err != nil {
		return Inputs{}, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, cmName, err)
	}
	if found {
		in.RuntimeConfig = []byte(cm.Data[config.FileName])
	}
	return in, nil
}

// apiReader GETs objects as JSON with the kubeconfig's transport (its TLS, credentials and
// exec plugins). No typed client: the runtime binary stays free of the Kubernetes types.
type apiReader struct {
	hc   *http.Client
	base *url.URL
}

// get decodes the object at the path into out; found is false on 404.
func (a apiReader) get(ctx context.Context, out any, elem ...string) (found bool, err error) {
	u := a.base.JoinPath(elem...)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxObjectBytes+1))
	if err != nil {
		return false, err
	}
	if len(body) > maxObjectBytes {
		return false, fmt.Errorf("the response is larger than %d bytes", maxObjectBytes)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(body, out); err != nil {
			return false, fmt.Errorf("decoding the response: %w", err)
		}
		return true, nil
	case http.StatusNotFound:
		if st := status(body); st.Reason == "NotFound" && st.Details.Name == elem[len(elem)-1] {
			return false, nil
		}
		// A 404 that names no object: the API itself is missing.
		return false, fail(ErrServerNotFound, "the API server does not serve %s: is the mcp-fleet-operator CRD installed?", u.Path)
	case http.StatusUnauthorized:
		return false, fmt.Errorf("the API server refused the kubeconfig's credentials (401): log in again or pick another --context")
	case http.StatusForbidden:
		return false, fail(ErrForbidden, "%s. Minting needs get on mcpservers, on the Secret NAME-auth and on the ConfigMap NAME-runtime in the namespace; ask an admin for a Role that grants them (see docs/runtime.md)", status(body).Message)
	default:
		msg := status(body).Message
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return false, errors.New("the API server answered " + resp.Status + ": " + msg)
	}
}

// apiStatus is the part of a metav1.Status error body worth reporting.
type apiStatus struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Details struct {
		Name string `json:"name"`
	} `json:"details"`
}

func status(body []byte) apiStatus {
	var s apiStatus
	_ = json.Unmarshal(body, &s)
	return s
}
