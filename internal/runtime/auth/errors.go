package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalidToken is wrapped by every credential verification failure, together with one
// of the reason sentinels below. Messages are fixed strings: they never quote the token or
// any of its claims.
var ErrInvalidToken = errors.New("invalid credentials")

// Reason sentinels (match with errors.Is).
var (
	ErrNoCredentials     = errors.New("no credentials presented")
	ErrBadRequest        = errors.New("malformed Authorization header")
	ErrMalformed         = errors.New("token is malformed")
	ErrTooLong           = errors.New("token is too long")
	ErrAlgorithm         = errors.New("token algorithm is not accepted")
	ErrCritical          = errors.New("token has critical header parameters this verifier does not understand")
	ErrUnknownIssuer     = errors.New("token issuer is not accepted")
	ErrUnknownKey        = errors.New("token signing key is unknown")
	ErrKeysUnavailable   = errors.New("signing keys are unavailable")
	ErrSignature         = errors.New("token signature is invalid")
	ErrExpired           = errors.New("token is expired")
	ErrNotYetValid       = errors.New("token is not valid yet")
	ErrAudience          = errors.New("token audience is not accepted")
	ErrMissingClaim      = errors.New("token lacks a required claim")
	ErrClaims            = errors.New("token claims are invalid")
	ErrUnknownAPIKey     = errors.New("api key is unknown")
	ErrTicketInvalid     = errors.New("ticket is invalid")
	ErrTicketTooLarge    = errors.New("a ticket for this credential would exceed the token size limit")
	ErrTicketExpired     = errors.New("ticket is expired")
	ErrTicketReplayed    = errors.New("ticket was already used")
	ErrTicketOrigin      = errors.New("ticket was issued to another origin")
	ErrTicketReplica     = errors.New("ticket was issued by another replica or before a restart; request a new one")
	ErrTicketCapacity    = errors.New("too many outstanding tickets")
	ErrTicketsDisabled   = errors.New("tickets are disabled")
	ErrFirstMessage      = errors.New("first message is not an auth message")
	ErrInsufficientScope = errors.New("insufficient scope")
	ErrTooManyFailures   = errors.New("too many failed authentications from this client; retry later")
)

// reasons maps each sentinel to the short code reported in Decision.Reason.
var reasons = []struct {
	err  error
	code string
}{
	{ErrNoCredentials, "no_credentials"},
	{ErrBadRequest, "bad_authorization_header"},
	{ErrTooLong, "token_too_long"},
	{ErrAlgorithm, "algorithm_not_accepted"},
	{ErrCritical, "unsupported_critical_header"},
	{ErrUnknownIssuer, "unknown_issuer"},
	{ErrUnknownKey, "unknown_key"},
	{ErrKeysUnavailable, "keys_unavailable"},
	{ErrSignature, "bad_signature"},
	{ErrExpired, "expired"},
	{ErrNotYetValid, "not_yet_valid"},
	{ErrAudience, "wrong_audience"},
	{ErrMissingClaim, "missing_claim"},
	{ErrClaims, "invalid_claims"},
	{ErrUnknownAPIKey, "unknown_api_key"},
	{ErrTicketInvalid, "ticket_invalid"},
	{ErrTicketExpired, "ticket_expired"},
	{ErrTicketReplayed, "ticket_replayed"},
	{ErrTicketOrigin, "ticket_origin_mismatch"},
	{ErrTicketReplica, "ticket_other_replica"},
	{ErrTicketCapacity, "ticket_capacity"},
	{ErrTicketsDisabled, "tickets_disabled"},
	{ErrFirstMessage, "bad_first_message"},
	{ErrMalformed, "malformed"},
	{ErrTooManyFailures, "too_many_failures"},
}

// Reason returns the short code of an authentication error ("expired", "unknown_key", …),
// or "invalid" for errors without a known reason.
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return "invalid"
}

func invalid(reason error) error { return fmt.Errorf("%w: %w", ErrInvalidToken, reason) }

// invalidDetail adds a detail that is known not to carry token material (e.g. a JWKS URL).
func invalidDetail(reason error, detail error) error {
	return fmt.Errorf("%w: %w: %v", ErrInvalidToken, reason, detail)
}

// ScopeError reports the scopes a principal lacks.
type ScopeError struct {
	Required []string
	Missing  []string
}

func (e *ScopeError) Error() string {
	return "insufficient scope: missing " + strings.Join(e.Missing, " ")
}

// Is makes errors.Is(err, ErrInsufficientScope) true.
func (e *ScopeError) Is(target error) bool { return target == ErrInsufficientScope }

// RequireScopes returns a *ScopeError (errors.Is ErrInsufficientScope) when p lacks any of
// scopes.
func RequireScopes(p Principal, scopes []string) error {
	var missing []string
	for _, s := range scopes {
		if !slices.Contains(p.Scopes, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return &ScopeError{Required: slices.Clone(scopes), Missing: missing}
	}
	return nil
}
