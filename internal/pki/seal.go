package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vdc-project/vdc/internal/atomicfile"
)

// A SealKey encrypts secrets at rest (the CA's private key in the store)
// with AES-256-GCM. It lives in a server's data dir, mode 0600: whoever
// reads the store without it learns nothing of the secret.
type SealKey struct {
	key []byte
}

// LoadSealKey reads the 32-byte key at path.
func LoadSealKey(path string) (*SealKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seal key: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("read seal key %s: %d bytes, want 32", path, len(b))
	}
	return &SealKey{key: b}, nil
}

// LoadOrCreateSealKey reads the key at path, making a random one (0600)
// where there is none.
func LoadOrCreateSealKey(path string) (*SealKey, error) {
	k, err := LoadSealKey(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := WriteSecretFile(path, b); err != nil {
		return nil, fmt.Errorf("create seal key: %w", err)
	}
	return &SealKey{key: b}, nil
}

// ID names the key without revealing it, so that an error can say which
// key sealed a secret.
func (k *SealKey) ID() string {
	h := sha256.Sum256(append([]byte("vdc seal key id\x00"), k.key...))
	return hex.EncodeToString(h[:6])
}

// Seal encrypts plaintext; aad (not secret) is bound to it and must be
// given again to open it.
func (k *SealKey) Seal(plaintext, aad []byte) (string, error) {
	g, err := k.gcm()
	if err != nil {
		return "", err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, plaintext, aad)), nil
}

// Open decrypts what Seal made.
func (k *SealKey) Open(sealed string, aad []byte) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, fmt.Errorf("open sealed secret: %w", err)
	}
	g, err := k.gcm()
	if err != nil {
		return nil, err
	}
	if len(b) < g.NonceSize() {
		return nil, errors.New("open sealed secret: too short")
	}
	p, err := g.Open(nil, b[:g.NonceSize()], b[g.NonceSize():], aad)
	if err != nil {
		return nil, errors.New("open sealed secret: wrong key or altered data")
	}
	return p, nil
}

func (k *SealKey) gcm() (cipher.AEAD, error) {
	b, err := aes.NewCipher(k.key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// WriteSecretFile writes b to path, mode 0600, through a temporary file
// renamed into place (a crash leaves the old file or the new one).
func WriteSecretFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// WritePublicFile is WriteSecretFile for what anyone may read
// (certificates), mode 0644.
func WritePublicFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o644)
}
