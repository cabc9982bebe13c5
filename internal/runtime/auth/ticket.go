package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mcpfleet/mcp-fleet-operator/internal/runtime/config"
)

// MinTicketKeyBytes is the shortest accepted ticket HMAC key.
const MinTicketKeyBytes = 32

// maxOutstandingTickets bounds the replay set; beyond it redemption fails closed.
const maxOutstandingTickets = 100_000

const ticketPrefix = "mt1."

// ticketer issues and redeems single-use WebSocket tickets:
// "mt1.<base64url claims>.<base64url HMAC-SHA256>". Single use is enforced by a replay set
// in memory whose entries expire with the tickets, so a ticket is redeemed only by the
// process that issued it (its random replica id is a claim): another replica holding the
// same key, or this one after a restart, has not seen the redemptions and refuses it.
//
// Expiry runs on the monotonic clock: "exp" is Unix milliseconds as of issuance, but since
// only this process redeems the ticket, it reads exp as an offset from its own start. A
// wall-clock step (an NTP correction) then neither expires tickets early nor revives one
// whose replay-set entry was already swept (forward, sweep, back again).
type ticketer struct {
	key     []byte
	ttl     time.Duration
	opts    *Options
	replica string // random per process; "" only in tests that build a ticketer by hand
	epochMs int64  // Unix milliseconds of the wall clock when the ticketer started
	// elapsed is the time since the ticketer started, on the monotonic clock (Go's
	// time.Time.Sub uses it when both readings carry it, as time.Now's do).
	elapsed func() time.Duration

	// revocation finds an API key's revocation by id and serial (nil: no API keys).
	revocation func(id string, serial uint64) (<-chan struct{}, bool)

	mu        sync.Mutex
	used      map[string]time.Duration // ticket id → expiry, as elapsed time
	lastSweep time.Duration
	maxUsed   int
}

// startClock sets the epoch and the monotonic elapsed-time source from opts.Now.
func (t *ticketer) startClock() {
	start := t.opts.Now()
	t.epochMs = start.UnixMilli()
	t.elapsed = func() time.Duration { return t.opts.Now().Sub(start) }
}

type ticketClaims struct {
	Subject string   `json:"sub"`
	Issuer  string   `json:"iss,omitempty"`
	Scopes  []string `json:"scp,omitempty"`
	Origin  string   `json:"org"`
	Expiry  int64    `json:"exp"` // Unix milliseconds
	ID      string   `json:"jti"`
	Replica string   `json:"rep,omitempty"`
	// CredentialExpiry is the Unix milliseconds at which the credential the ticket was
	// minted for expires (0: it does not); the socket opened with the ticket ends then.
	CredentialExpiry int64 `json:"cxp,omitempty"`
	// KeySerial is the API key the ticket was minted with (0: not an API key): the socket
	// opened with the ticket ends when that key is revoked, and a revoked key's ticket fails.
	KeySerial uint64 `json:"ks,omitempty"`
}

func newTicketer(cfg config.Tickets, opts *Options) (*ticketer, error) {
	replica := make([]byte, 12)
	if _, err := rand.Read(replica); err != nil {
		return nil, fmt.Errorf("generating the replica id: %w", err)
	}
	t := &ticketer{ttl: cfg.TTL.Duration, opts: opts, used: map[string]time.Duration{}, maxUsed: maxOutstandingTickets,
		replica: base64.RawURLEncoding.EncodeToString(replica)}
	t.startClock()
	if t.ttl <= 0 {
		t.ttl = 30 * time.Second
	}
	if cfg.KeyFile == "" {
		t.key = make([]byte, MinTicketKeyBytes)
		if _, err := rand.Read(t.key); err != nil {
			return nil, fmt.Errorf("generating the ticket key: %w", err)
		}
		return t, nil
	}
	data, err := readBounded(cfg.KeyFile, 4096)
	if err != nil {
		return nil, fmt.Errorf("reading the ticket key: %w", err)
	}
	if t.key, err = ParseTicketKey(data); err != nil {
		return nil, fmt.Errorf("ticket key %s: %w", cfg.KeyFile, err)
	}
	return t, nil
}

// ParseTicketKey reads a ticket HMAC key file. If its content, surrounding whitespace
// trimmed, is standard or URL-safe base64 (padded or not) decoding to at least 32 bytes,
// the decoded bytes are the key; otherwise the raw content is the key and must be at least
// 32 bytes. So both a Secret's raw 32 random bytes and their base64 text work.
func ParseTicketKey(data []byte) ([]byte, error) {
	text := string(bytes.TrimSpace(data))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(text); err == nil && len(key) >= MinTicketKeyBytes {
			return key, nil
		}
	}
	if len(data) >= MinTicketKeyBytes {
		return bytes.Clone(data), nil
	}
	return nil, fmt.Errorf("a ticket key needs at least %d bytes (raw, or base64 encoded)", MinTicketKeyBytes)
}

func (t *ticketer) mac(payload string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(ticketPrefix))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// issue mints a ticket for p, bound to the Origin of the requesting page ("" for clients
// that send none), and says how long it is valid: the configured TTL, but never past the
// expiry of p's credential.
func (t *ticketer) issue(p Principal, origin string) (string, time.Duration, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", 0, fmt.Errorf("generating a ticket id: %w", err)
	}
	ttl := t.ttl
	var credExp int64
	if !p.Expires.IsZero() {
		ttl = min(ttl, max(p.Expires.Sub(t.opts.Now()), 0))
		credExp = p.Expires.UnixMilli()
	}
	claims, err := json.Marshal(ticketClaims{
		Subject:          p.Subject,
		Issuer:           p.Issuer,
		Scopes:           p.Scopes,
		Origin:           origin,
		Expiry:           t.epochMs + (t.elapsed() + ttl).Milliseconds(),
		ID:               base64.RawURLEncoding.EncodeToString(id),
		Replica:          t.replica,
		CredentialExpiry: credExp,
		KeySerial:        p.apiKeySerial,
	})
	if err != nil {
		return "", 0, fmt.Errorf("encoding a ticket: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(claims)
	ticket := ticketPrefix + payload + "." + base64.RawURLEncoding.EncodeToString(t.mac(payload))
	if len(ticket) > MaxTokenBytes { // redeem would refuse it: say so now, not at the upgrade
		return "", 0, ErrTicketTooLarge
	}
	return ticket, ttl, nil
}

// redeem verifies a ticket presented at a WebSocket upgrade from origin and consumes it.
func (t *ticketer) redeem(ticket, origin string) (Principal, error) {
	if len(ticket) > MaxTokenBytes {
		return Principal{}, invalid(ErrTooLong)
	}
	rest, ok := strings.CutPrefix(ticket, ticketPrefix)
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return Principal{}, invalid(ErrTicketInvalid)
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig) // strict: one encoding per MAC
	if err != nil || !hmac.Equal(got, t.mac(payload)) {
		return Principal{}, invalid(ErrTicketInvalid)
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Principal{}, invalid(ErrTicketInvalid)
	}
	var c ticketClaims
	if err := json.Unmarshal(raw, &c); err != nil || c.Subject == "" || c.ID == "" {
		return Principal{}, invalid(ErrTicketInvalid)
	}
	now := t.elapsed()
	exp := time.Duration(c.Expiry-t.epochMs) * time.Millisecond
	if now >= exp {
		return Principal{}, invalid(ErrTicketExpired)
	}
	if exp-now > t.ttl+time.Minute { // minted with a longer TTL than this replica allows
		return Principal{}, invalid(ErrTicketInvalid)
	}
	if c.Origin != origin {
		return Principal{}, invalid(ErrTicketOrigin)
	}
	if c.Replica != t.replica {
		return Principal{}, invalid(ErrTicketReplica)
	}
	var revoked <-chan struct{}
	if c.KeySerial != 0 {
		var live bool
		if t.revocation != nil {
			revoked, live = t.revocation(c.Subject, c.KeySerial)
		}
		if !live { // the key was revoked (or replaced) since the ticket was minted
			return Principal{}, invalid(ErrUnknownAPIKey)
		}
	}
	if err := t.consume(c.ID, exp, now); err != nil {
		return Principal{}, err
	}
	p := Principal{Subject: c.Subject, Issuer: c.Issuer, Method: MethodTicket, Scopes: c.Scopes, Revoked: revoked}
	if c.CredentialExpiry != 0 {
		p.Expires = time.UnixMilli(c.CredentialExpiry)
	}
	return p, nil
}

// consume records a ticket id as used until it expires (times as elapsed since the start).
func (t *ticketer) consume(id string, exp, now time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now-t.lastSweep >= t.ttl || (len(t.used) >= t.maxUsed && now-t.lastSweep >= time.Second) {
		t.lastSweep = now
		for k, e := range t.used {
			if now >= e {
				delete(t.used, k)
			}
		}
	}
	if _, replayed := t.used[id]; replayed {
		return invalid(ErrTicketReplayed)
	}
	if len(t.used) >= t.maxUsed {
		return invalid(ErrTicketCapacity)
	}
	t.used[id] = exp
	return nil
}

func (t *ticketer) outstanding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.used)
}
