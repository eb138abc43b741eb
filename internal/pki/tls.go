package pki

import "crypto/tls"

// CipherSuites are the TLS 1.2 suites vdc speaks: forward-secret (ECDHE)
// and authenticated encryption (AES-GCM, ChaCha20-Poly1305) only. The CBC
// suites with SHA-1 MACs, which Go still offers by default, are left out.
// TLS 1.3 suites are all AEAD and not configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Harden sets vdc's TLS policy (TLS 1.2 at least, CipherSuites only) on a
// configuration and returns it. Every vdc listener and every client of a
// vdc server or agent goes through it, so there is one policy to change.
func Harden(c *tls.Config) *tls.Config {
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	c.CipherSuites = CipherSuites
	return c
}
