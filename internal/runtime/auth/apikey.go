package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// HashAPIKey returns the stored form of an API key: "sha256:<hex>". The file named after
// the key id in config APIKeys.Dir holds exactly this.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// apiKeyStore holds API key hashes indexed by their first 8 bytes: a presented key is
// hashed, its candidates looked up, and the full hashes compared in constant time without
// early exit. The directory is re-read at most every ReloadInterval (Secret rotation).
type apiKeyStore struct {
	dir  string
	opts *Options

	mu       sync.Mutex
	index    map[uint64][]apiKey
	loadedAt time.Time
}

type apiKey struct {
	id   string
	hash [sha256.Size]byte
}

func newAPIKeyStore(dir string, opts *Options) (*apiKeyStore, error) {
	s := &apiKeyStore{dir: dir, opts: opts}
	index, err := s.load()
	if err != nil {
		return nil, err
	}
	s.index, s.loadedAt = index, opts.Now()
	return s, nil
}

func (s *apiKeyStore) load() (map[uint64][]apiKey, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("reading the API key directory: %w", err)
	}
	index := map[uint64][]apiKey{}
	seen := map[[sha256.Size]byte]string{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") { // Secret volume internals (..data) and hidden files
			continue
		}
		path := filepath.Join(s.dir, name)
		if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
			continue
		}
		if !validKeyID(name) {
			return nil, fmt.Errorf("API key file %q: the file name is the key id and may only hold letters, digits, '.', '_', '-' and '@' (at most 128)", name)
		}
		data, err := readBounded(path, 1024)
		if err != nil {
			return nil, fmt.Errorf("API key %q: %w", name, err)
		}
		hexHash, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "sha256:")
		var k apiKey
		if n, err := hex.Decode(k.hash[:], []byte(hexHash)); !ok || err != nil || n != sha256.Size || len(hexHash) != 2*sha256.Size {
			return nil, fmt.Errorf("API key %q: content must be \"sha256:<64 hex digits>\" (the hash of the key, never the key)", name)
		}
		if other, dup := seen[k.hash]; dup {
			return nil, fmt.Errorf("API keys %q and %q have the same hash: each key must be distinct", other, name)
		}
		seen[k.hash] = name
		k.id = name
		prefix := binary.BigEndian.Uint64(k.hash[:8])
		index[prefix] = append(index[prefix], k)
	}
	return index, nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-@", c)) {
			return false
		}
	}
	return true
}

// lookup returns the id of the key whose hash equals the hash of token.
func (s *apiKeyStore) lookup(token string) (string, bool) {
	sum := sha256.Sum256([]byte(token))
	s.mu.Lock()
	if now := s.opts.Now(); now.Sub(s.loadedAt) >= s.opts.ReloadInterval {
		s.loadedAt = now
		if index, err := s.load(); err == nil {
			s.index = index
		} else {
			s.opts.Logger.Warn("Keeping the previous API keys: reloading failed", "error", err)
		}
	}
	candidates := s.index[binary.BigEndian.Uint64(sum[:8])]
	s.mu.Unlock()
	id, found := "", 0
	for _, k := range candidates {
		if subtle.ConstantTimeCompare(k.hash[:], sum[:]) == 1 {
			id, found = k.id, 1
		}
	}
	return id, found == 1
}
