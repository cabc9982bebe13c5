package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// tokenCacheTTL caps how long a verified JWT is trusted without verifying its signature
// again, whatever its exp says.
const tokenCacheTTL = time.Minute

// defaultTokenCacheSize bounds the cache when Options.TokenCacheSize is 0.
const defaultTokenCacheSize = 10000

// tokenCache remembers verified JWTs so a client reusing its bearer token pays the
// signature check (~80 µs for ES256) once a minute instead of on every request.
//
// Entries are keyed by the token's SHA-256, never the token. An entry serves until
// min(exp, verification + tokenCacheTTL), and only while the key set of the provider that
// verified it is unchanged: every hit first lets the key source reload or refresh when due
// (as an uncached verification would) and a changed key set clears the cache, so removing
// a key revokes its tokens as fast as without the cache. Failures are never cached.
type tokenCache struct {
	max int

	mu        sync.Mutex
	entries   map[[sha256.Size]byte]cachedToken
	lastSweep time.Time
}

type cachedToken struct {
	principal Principal
	provider  *provider
	keyGen    uint64    // provider.keys.generation() before the verification
	until     time.Time // min(exp, verified + tokenCacheTTL)
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[[sha256.Size]byte]cachedToken)}
}

// get returns the principal of a token verified earlier whose entry is still good at now.
func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (Principal, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && !now.Before(e.until) {
		delete(c.entries, key)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return Principal{}, false
	}
	// Outside the lock: a due key-file reload or JWKS refresh may do I/O.
	if e.provider.keys.generation() != e.keyGen {
		c.clear()
		return Principal{}, false
	}
	return e.principal, true
}

// put stores a verified token; entries that would already be stale are not stored.
func (c *tokenCache) put(key [sha256.Size]byte, e cachedToken, now time.Time) {
	if !now.Before(e.until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[key] = e
}

// evictLocked makes room: drop stale entries (at most once a second, the sweep is O(n)),
// then arbitrary ones (map order is random) until one slot is free.
func (c *tokenCache) evictLocked(now time.Time) {
	if now.Sub(c.lastSweep) >= time.Second {
		c.lastSweep = now
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.max {
			break
		}
		delete(c.entries, k)
	}
}

func (c *tokenCache) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
