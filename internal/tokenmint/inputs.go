package tokenmint

import (
	"crypto"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// The names below are the operator's (internal/resources); they are repeated here so the
// runtime binary does not link the builders and their Kubernetes and cert-manager types.
// TestNamesMatchTheBuilders pins each one to its builder.
const (
	// authKeyPrivate and authKeyPublic are the signing pair's keys in the auth Secret.
	authKeyPrivate = "jwt.key"
	authKeyPublic  = "jwt.pub"
	// authDir is where pods mount the auth Secret; the generated issuer's provider reads
	// authDir/jwt.pub.
	authDir = "/etc/mcp-runtime/auth"
)

// AuthSecretName is the operator-generated auth Secret of a server.
func AuthSecretName(server string) string { return server + "-auth" }

// ConfigMapName is the ConfigMap holding a server's rendered runtime configuration.
func ConfigMapName(server string) string { return server + "-runtime" }

// Errors wrapped by IssuerFor and Load (match with errors.Is); each message says what to do.
var (
	ErrServerNotFound     = errors.New("MCPServer not found")
	ErrNotGeneratedIssuer = errors.New("the server does not accept tokens of the operator-generated issuer")
	ErrNotReconciled      = errors.New("the operator has not set the server up yet")
	ErrForbidden          = errors.New("not allowed to read what minting needs")
	ErrBadKey             = errors.New("the auth Secret's signing key is unusable")
)

// kindError is a message of its own that also matches its kind with errors.Is.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func fail(kind error, format string, a ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, a...)}
}

// Server is the part of an MCPServer that decides whether tokens can be minted for it
// (JSON field names as in api/v1alpha1; pinned by a test).
type Server struct {
	Metadata struct {
		Name       string `json:"name"`
		Namespace  string `json:"namespace"`
		Generation int64  `json:"generation"`
	} `json:"metadata"`
	Spec struct {
		Auth struct {
			InsecureAnonymous bool `json:"insecureAnonymous"`
			GeneratedIssuer   struct {
				Disabled bool `json:"disabled"`
			} `json:"generatedIssuer"`
			JWT []struct {
				Issuer string `json:"issuer"`
			} `json:"jwt"`
			APIKeys *struct {
				SecretName string `json:"secretName"`
			} `json:"apiKeys"`
		} `json:"auth"`
	} `json:"spec"`
	Status struct {
		ObservedGeneration int64 `json:"observedGeneration"`
	} `json:"status"`
}

// Inputs are the objects a token is minted from. SecretData or RuntimeConfig are nil when
// the object does not exist.
type Inputs struct {
	Server Server
	// SecretData is the data of the auth Secret (AuthSecretName).
	SecretData map[string][]byte
	// RuntimeConfig is the runtime.yaml of the ConfigMap (ConfigMapName) the pods load.
	RuntimeConfig []byte
}

// IssuerFor decides whether tokens of server namespace/name can be minted and returns
// the issuer that mints them: the key from the auth Secret, and the issuer, audiences,
// algorithm and scope claim of the rendered runtime configuration's provider that
// verifies with that Secret's public key.
func IssuerFor(in Inputs) (*Issuer, error) {
	s := in.Server
	ns, name := s.Metadata.Namespace, s.Metadata.Name
	ref := "MCPServer " + ns + "/" + name
	a := s.Spec.Auth
	if a.InsecureAnonymous {
		return nil, fail(ErrNotGeneratedIssuer, "%s accepts anonymous callers (spec.auth.insecureAnonymous: true), so it needs no token and has no issuer key to sign one with", ref)
	}
	if a.GeneratedIssuer.Disabled {
		var alts []string
		for _, p := range a.JWT {
			alts = append(alts, fmt.Sprintf("a token from issuer %q (spec.auth.jwt): get it from that issuer", p.Issuer))
		}
		if a.APIKeys != nil {
			alts = append(alts, fmt.Sprintf("an API key listed in Secret %s/%s (spec.auth.apiKeys): ask its owner", ns, a.APIKeys.SecretName))
		}
		return nil, fail(ErrNotGeneratedIssuer, "%s has spec.auth.generatedIssuer.disabled: true. It accepts %s. To use mcp-runtime token, set spec.auth.generatedIssuer.disabled: false",
			ref, strings.Join(alts, "; or "))
	}
	waitHint := fmt.Sprintf("wait until it is Ready (kubectl wait --for=condition=Ready mcpserver/%s -n %s) and check the operator is running", name, ns)
	if s.Metadata.Generation > s.Status.ObservedGeneration {
		waitHint = fmt.Sprintf("generation %d is not reconciled yet (status.observedGeneration %d): %s", s.Metadata.Generation, s.Status.ObservedGeneration, waitHint)
	}

	secret := ns + "/" + AuthSecretName(name)
	if in.SecretData == nil {
		return nil, fail(ErrNotReconciled, "Secret %s does not exist: %s", secret, waitHint)
	}
	if len(in.SecretData[authKeyPrivate]) == 0 || len(in.SecretData[authKeyPublic]) == 0 {
		return nil, fail(ErrNotReconciled, "Secret %s lacks %s or %s; the operator generates a new pair on its next reconcile: %s",
			secret, authKeyPrivate, authKeyPublic, waitHint)
	}
	key, err := ParsePrivateKey(in.SecretData[authKeyPrivate])
	if err != nil {
		return nil, fail(ErrBadKey, "Secret %s key %s: %w; delete %s and %s from the Secret to have the operator generate a new pair",
			secret, authKeyPrivate, err, authKeyPrivate, authKeyPublic)
	}
	pub, err := ParsePublicKey(in.SecretData[authKeyPublic])
	if err != nil {
		return nil, fail(ErrBadKey, "Secret %s key %s: %w; delete %s and %s from the Secret to have the operator generate a new pair",
			secret, authKeyPublic, err, authKeyPrivate, authKeyPublic)
	}
	if eq, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
		return nil, fail(ErrBadKey, "in Secret %s, %s is not the public half of %s, so the runtime would refuse every token; delete both keys to have the operator generate a new pair",
			secret, authKeyPublic, authKeyPrivate)
	}

	cm := ns + "/" + ConfigMapName(name)
	if in.RuntimeConfig == nil {
		return nil, fail(ErrNotReconciled, "ConfigMap %s (the runtime configuration) does not exist: %s", cm, waitHint)
	}
	cfg, err := config.Parse(in.RuntimeConfig)
	if err != nil {
		return nil, fail(ErrNotReconciled, "ConfigMap %s key %s is not a valid runtime configuration: %w", cm, config.FileName, err)
	}
	keyFile := path.Join(authDir, authKeyPublic)
	for _, p := range cfg.Auth.JWT {
		i := slices.IndexFunc(p.KeyFiles, func(k config.KeyFile) bool { return k.Path == keyFile })
		if i < 0 {
			continue
		}
		alg := p.KeyFiles[i].Algorithm
		if !fits(key.Public(), alg) {
			return nil, fail(ErrBadKey, "Secret %s holds a %T, but the runtime configuration pins %s to %s; delete %s and %s from the Secret to have the operator generate a new pair",
				secret, key.Public(), keyFile, alg, authKeyPrivate, authKeyPublic)
		}
		kid, err := KeyID(pub)
		if err != nil {
			return nil, fail(ErrBadKey, "%w", err)
		}
		return &Issuer{
			Issuer:     p.Issuer,
			Audiences:  slices.Clone(p.Audiences),
			Algorithm:  alg,
			ScopeClaim: p.ScopeClaim,
			Key:        key,
			KeyID:      kid,
		}, nil
	}
	return nil, fail(ErrNotReconciled, "the runtime configuration in ConfigMap %s has no JWT provider for the generated key (%s): %s",
		cm, keyFile, waitHint)
}
