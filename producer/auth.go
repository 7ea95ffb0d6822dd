package producer

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// keyring checks bearer keys in constant time. Keys are kept only as SHA-256
// digests, so that comparing is independent of a key's length and a heap dump
// does not hold them in clear.
type keyring struct {
	digests [][sha256.Size]byte
}

func newKeyring(keys []string) keyring {
	k := keyring{digests: make([][sha256.Size]byte, 0, len(keys))}
	for _, key := range keys {
		k.digests = append(k.digests, sha256.Sum256([]byte(key)))
	}
	return k
}

// match returns the digest of the key the Authorization header carries, if
// it is one of the keys. It compares against every key, whatever the
// outcome, so that timing says nothing about which key (or how much of it)
// matched.
func (k keyring) match(authorization string) ([sha256.Size]byte, bool) {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return [sha256.Size]byte{}, false
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return [sha256.Size]byte{}, false
	}
	got := sha256.Sum256([]byte(token))
	match := 0
	for i := range k.digests {
		match |= subtle.ConstantTimeCompare(got[:], k.digests[i][:])
	}
	return got, match == 1
}
