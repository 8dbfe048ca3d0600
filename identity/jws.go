package identity

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Issuing a token is one ES256 signature; everything around it is kept cheaper than the
// signature itself (see the notes of BenchmarkTokenIssuance). go-jose's signer marshals the
// protected header twice per token through reflection and allocates per step, so the issuer
// writes the compact JWS itself: the header segment is computed once per key (by go-jose, so
// it is byte for byte what go-jose would send), the claims are appended field by field in
// exactly encoding/json's output, and the signature is crypto/ecdsa's, as in go-jose.
// Tokens are still verified by go-jose (Verifier).

// signToken returns the compact JWS of claims signed with key.
func signToken(key *loadedKey, c *tokenClaims) (string, error) {
	var buf [1024]byte
	payload := appendClaims(buf[:0], c)
	var outBuf [2048]byte // on the stack: string(out) is the one copy a token costs
	out := append(outBuf[:0], key.header...)
	out = append(out, '.')
	out = base64.RawURLEncoding.AppendEncode(out, payload)
	digest := sha256.Sum256(out)
	r, s, err := ecdsa.Sign(rand.Reader, key.priv, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	out = append(out, '.')
	out = base64.RawURLEncoding.AppendEncode(out, sig[:])
	return string(out), nil
}

// appendClaims appends the JSON of c exactly as json.Marshal(c) writes it (a test holds the
// two equal).
func appendClaims(b []byte, c *tokenClaims) []byte {
	b = append(b, '{')
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	if c.Issuer != "" {
		field("iss")
		b = appendJSONString(b, c.Issuer)
	}
	if c.Subject != "" {
		field("sub")
		b = appendJSONString(b, c.Subject)
	}
	switch len(c.Audience) {
	case 0:
	case 1:
		field("aud")
		b = appendJSONString(b, c.Audience[0])
	default:
		field("aud")
		b = appendJSONStrings(b, c.Audience)
	}
	for _, d := range []struct {
		name string
		v    *int64
	}{{"exp", (*int64)(c.Expiry)}, {"nbf", (*int64)(c.NotBefore)}, {"iat", (*int64)(c.IssuedAt)}} {
		if d.v != nil {
			field(d.name)
			b = strconv.AppendInt(b, *d.v, 10)
		}
	}
	if c.ID != "" {
		field("jti")
		b = appendJSONString(b, c.ID)
	}
	field("scope")
	b = appendJSONString(b, c.Scope)
	if p := c.Principal; p != nil {
		field(PrincipalClaim)
		b = append(b, `{"type":`...)
		b = appendJSONString(b, p.Type)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, p.Name)
		b = append(b, `,"orgId":`...)
		b = appendJSONString(b, p.OrgID)
		b = append(b, `,"orgName":`...)
		b = appendJSONString(b, p.OrgName)
		b = append(b, `,"envId":`...)
		b = appendJSONString(b, p.EnvID)
		b = append(b, `,"roles":`...)
		b = appendJSONStrings(b, p.Roles)
		b = append(b, '}')
	}
	if c.SessionID != "" {
		field("sid")
		b = appendJSONString(b, c.SessionID)
	}
	if c.CSRF != "" {
		field("csrf")
		b = appendJSONString(b, c.CSRF)
	}
	return append(b, '}')
}

func appendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONString appends s as encoding/json quotes it. Strings of printable ASCII that
// encoding/json would not escape (every id, scope and URL Sortie writes) are copied; any
// other string goes through encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	if plainJSON(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// plainJSON reports whether encoding/json writes s between quotes unchanged (with its
// default HTML escaping).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// protectedHeader returns the first segment of the compact JWS go-jose's signer writes for
// key: the base64url of its protected header, the same for every token the key signs.
func protectedHeader(lk loadedKey) (string, error) {
	jws, err := lk.signer.Sign([]byte("{}"))
	if err != nil {
		return "", fmt.Errorf("signing key %s: %w", lk.rec.ID, err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("signing key %s: %w", lk.rec.ID, err)
	}
	hdr, _, _ := strings.Cut(raw, ".")
	return hdr, nil
}
