package ovf

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"hash"
	"io"
	"regexp"
	"sort"
	"strings"
)

// Digest is a manifest line: the file's hash with one algorithm.
type Digest struct {
	Algo string // SHA1, SHA256, SHA512
	Hex  string
}

// Manifest maps file names to their digests.
type Manifest map[string]Digest

var mfLine = regexp.MustCompile(`^(SHA1|SHA256|SHA512)\s*\(([^)]+)\)\s*=\s*([0-9a-fA-F]+)$`)

// ParseManifest reads an .mf file.
func ParseManifest(data []byte) (Manifest, error) {
	if len(data) > 1<<20 {
		return nil, invalidf("manifest is %d bytes long; the limit is 1 MiB", len(data))
	}
	m := Manifest{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		g := mfLine.FindStringSubmatch(line)
		if g == nil {
			return nil, invalidf("manifest line %d is not ALGO(file)= hex: %q", n, truncate(line, 80))
		}
		want := map[string]int{"SHA1": 40, "SHA256": 64, "SHA512": 128}[g[1]]
		if len(g[3]) != want {
			return nil, invalidf("manifest line %d: a %s digest has %d hex digits, not %d", n, g[1], len(g[3]), want)
		}
		name := strings.TrimSpace(g[2])
		if _, dup := m[name]; dup {
			return nil, invalidf("manifest lists %q twice", name)
		}
		m[name] = Digest{Algo: g[1], Hex: strings.ToLower(g[3])}
	}
	return m, sc.Err()
}

// NewHash returns a hash of the algorithm.
func NewHash(algo string) hash.Hash {
	switch algo {
	case "SHA1":
		return sha1.New()
	case "SHA512":
		return sha512.New()
	}
	return sha256.New()
}

// Check compares a file's digest with the manifest's.
func (m Manifest) Check(name string, sums map[string]string) error {
	d, ok := m[name]
	if !ok {
		return invalidf("file %q is not in the manifest", name)
	}
	got, ok := sums[d.Algo]
	if !ok {
		return fmt.Errorf("file %q: no %s digest was computed", name, d.Algo)
	}
	if got != d.Hex {
		return invalidf("file %q does not match the manifest: its %s is %s, the manifest says %s", name, d.Algo, got, d.Hex)
	}
	return nil
}

// WriteManifest writes SHA256 lines for the files, sorted by name
// as given in order.
func WriteManifest(w io.Writer, names []string, sha256s map[string]string) error {
	for _, n := range names {
		if _, err := fmt.Fprintf(w, "SHA256(%s)= %s\n", n, sha256s[n]); err != nil {
			return err
		}
	}
	return nil
}

// Signer is who signed a package's manifest.
type Signer struct {
	Subject    string
	Issuer     string
	SelfSigned bool
}

var certSigLine = regexp.MustCompile(`^(SHA1|SHA256|SHA512)\s*\(([^)]+)\)\s*=\s*([0-9a-fA-F]+)$`)

// VerifyCertificate checks a package's .cert file: the signature it holds
// must be the manifest's, made with the key of the certificate it holds.
// Whether the certificate is one to trust is the caller's call (vdc has
// no store of trusted publishers: it reports who signed).
func VerifyCertificate(cert, manifest []byte, manifestName string) (Signer, error) {
	var s Signer
	if len(cert) > 1<<20 {
		return s, invalidf("certificate file is larger than 1 MiB")
	}
	var algo, sigHex string
	for _, line := range strings.Split(string(cert), "\n") {
		if g := certSigLine.FindStringSubmatch(strings.TrimSpace(line)); g != nil {
			if strings.TrimSpace(g[2]) != manifestName {
				return s, invalidf("the certificate file signs %q, not the manifest %q", g[2], manifestName)
			}
			algo, sigHex = g[1], g[3]
			break
		}
	}
	if sigHex == "" {
		return s, invalidf("the certificate file holds no signature line")
	}
	block, _ := pem.Decode(cert[bytes.Index(cert, []byte("-----BEGIN")):])
	if bytes.Index(cert, []byte("-----BEGIN")) < 0 || block == nil {
		return s, invalidf("the certificate file holds no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return s, invalidf("the certificate file's certificate cannot be read: %v", err)
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil {
		return s, invalidf("the certificate file's signature is not hex")
	}
	h := map[string]crypto.Hash{"SHA1": crypto.SHA1, "SHA256": crypto.SHA256, "SHA512": crypto.SHA512}[algo]
	hh := h.New()
	hh.Write(manifest)
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return s, invalidf("the signing certificate's key is not RSA; OVF signatures are RSA")
	}
	if err := rsa.VerifyPKCS1v15(pub, h, hh.Sum(nil), sig); err != nil {
		return s, invalidf("the manifest's signature does not verify with the package's certificate: the manifest was changed after signing, or the signature is not for it")
	}
	s.Subject, s.Issuer = c.Subject.String(), c.Issuer.String()
	s.SelfSigned = bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
	return s, nil
}

// SortedNames returns the manifest's file names in order.
func (m Manifest) SortedNames() []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
