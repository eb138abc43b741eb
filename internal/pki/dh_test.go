package pki

import (
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"testing"
)

// The DH group is a safe prime of 2048 bits with generator 2, shaped as
// RFC 7919 says: its top and bottom 64 bits all ones.
func TestFFDHE2048(t *testing.T) {
	b, rest := pem.Decode([]byte(FFDHE2048))
	if b == nil || b.Type != "DH PARAMETERS" || len(rest) != 0 {
		t.Fatalf("not one DH PARAMETERS block: %v", b)
	}
	var params struct{ P, G *big.Int }
	if _, err := asn1.Unmarshal(b.Bytes, &params); err != nil {
		t.Fatal(err)
	}
	p := params.P
	if p.BitLen() != 2048 || params.G.Int64() != 2 {
		t.Fatalf("p has %d bits, g = %v", p.BitLen(), params.G)
	}
	ones := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 64), big.NewInt(1))
	if new(big.Int).And(p, ones).Cmp(ones) != 0 || new(big.Int).Rsh(p, 2048-64).Cmp(ones) != 0 {
		t.Fatal("p does not start and end with 64 one bits")
	}
	q := new(big.Int).Rsh(p, 1)
	if !p.ProbablyPrime(20) || !q.ProbablyPrime(20) {
		t.Fatal("p is not a safe prime")
	}
}
