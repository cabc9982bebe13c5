package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
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
	serials  uint64 // the last serial given to a key
}

type apiKey struct {
	id   string
	hash [sha256.Size]byte
	// serial tells this key from a later one under the same id (a rotated value); revoked
	// is closed when a reload no longer finds it: connections opened with it end then.
	serial  uint64
	revoked chan struct{}
}

func newAPIKeyStore(dir string, opts *Options) (*apiKeyStore, error) {
	s := &apiKeyStore{dir: dir, opts: opts}
	index, err := s.load()
	if err != nil {
		return nil, err
	}
	if err := errors.Join(index.skipped...); err != nil {
		return nil, err
	}
	s.index, s.loadedAt = s.carryOver(nil, index.keys), opts.Now()
	return s, nil
}

// watch reloads the directory every ReloadInterval until ctx ends, also while no request
// comes: a removed key must end the connections opened with it (see apiKey.revoked).
func (s *apiKeyStore) watch(ctx context.Context) {
	t := time.NewTicker(s.opts.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			s.reloadIfDueLocked()
			s.mu.Unlock()
		}
	}
}

func (s *apiKeyStore) reloadIfDueLocked() {
	if now := s.opts.Now(); now.Sub(s.loadedAt) >= s.opts.ReloadInterval {
		s.loadedAt = now
		s.reloadLocked()
	}
}

// carryOver gives the keys of a new load the serial and revocation of the same key (id
// and hash) in old, or new ones, and revokes the keys of old that are gone.
func (s *apiKeyStore) carryOver(old, loaded map[uint64][]apiKey) map[uint64][]apiKey {
	type idHash struct {
		id   string
		hash [sha256.Size]byte
	}
	prev := map[idHash]apiKey{}
	for _, ks := range old {
		for _, k := range ks {
			prev[idHash{k.id, k.hash}] = k
		}
	}
	for prefix, ks := range loaded {
		for i, k := range ks {
			if p, ok := prev[idHash{k.id, k.hash}]; ok {
				k.serial, k.revoked = p.serial, p.revoked
				delete(prev, idHash{k.id, k.hash})
			} else {
				s.serials++
				k.serial, k.revoked = s.serials, make(chan struct{})
			}
			loaded[prefix][i] = k
		}
	}
	for _, gone := range prev {
		close(gone.revoked)
	}
	return loaded
}

// loadedKeys are the keys of the directory's valid files, and why the others were skipped.
type loadedKeys struct {
	keys    map[uint64][]apiKey
	skipped []error
}

// load reads the directory. A file that is not a valid key is skipped and reported rather
// than failing the whole set: on a reload, the keys removed meanwhile must be revoked even
// when a file added with them is broken.
func (s *apiKeyStore) load() (loadedKeys, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return loadedKeys{}, fmt.Errorf("reading the API key directory: %w", err)
	}
	out := loadedKeys{keys: map[uint64][]apiKey{}}
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
		k, err := loadAPIKey(path, name)
		if err != nil {
			out.skipped = append(out.skipped, err)
			continue
		}
		if other, dup := seen[k.hash]; dup {
			out.skipped = append(out.skipped, fmt.Errorf("API keys %q and %q have the same hash: each key must be distinct", other, name))
			continue
		}
		seen[k.hash] = name
		prefix := binary.BigEndian.Uint64(k.hash[:8])
		out.keys[prefix] = append(out.keys[prefix], k)
	}
	return out, nil
}

// loadAPIKey reads one key file; name is the key id.
func loadAPIKey(path, name string) (apiKey, error) {
	if !validKeyID(name) {
		return apiKey{}, fmt.Errorf("API key file %q: the file name is the key id and may only hold letters, digits, '.', '_', '-' and '@' (at most 128)", name)
	}
	data, err := readBounded(path, 1024)
	if err != nil {
		return apiKey{}, fmt.Errorf("API key %q: %w", name, err)
	}
	hexHash, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "sha256:")
	k := apiKey{id: name}
	if n, err := hex.Decode(k.hash[:], []byte(hexHash)); !ok || err != nil || n != sha256.Size || len(hexHash) != 2*sha256.Size {
		return apiKey{}, fmt.Errorf("API key %q: content must be \"sha256:<64 hex digits>\" (the hash of the key, never the key)", name)
	}
	return k, nil
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

// reloadLocked re-reads the directory. Keys whose files are broken are left out (and
// reported); only a directory that cannot be read at all keeps the previous keys.
func (s *apiKeyStore) reloadLocked() {
	loaded, err := s.load()
	if err != nil {
		s.opts.Logger.Warn("Keeping the previous API keys: reading the directory failed", "error", err)
		return
	}
	if err := errors.Join(loaded.skipped...); err != nil {
		s.opts.Logger.Warn("Skipping invalid API key files", "error", err)
	}
	s.index = s.carryOver(s.index, loaded.keys)
}

// lookup returns the key whose hash equals the hash of token.
func (s *apiKeyStore) lookup(token string) (apiKey, bool) {
	sum := sha256.Sum256([]byte(token))
	s.mu.Lock()
	s.reloadIfDueLocked()
	candidates := s.index[binary.BigEndian.Uint64(sum[:8])]
	s.mu.Unlock()
	var key apiKey
	found := 0
	for _, k := range candidates {
		if subtle.ConstantTimeCompare(k.hash[:], sum[:]) == 1 {
			key, found = k, 1
		}
	}
	return key, found == 1
}

// revocation returns the revocation of the key id with serial, if it is still loaded.
func (s *apiKeyStore) revocation(id string, serial uint64) (<-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reloadIfDueLocked()
	for _, ks := range s.index {
		for _, k := range ks {
			if k.id == id && k.serial == serial {
				return k.revoked, true
			}
		}
	}
	return nil, false
}
