package authz

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id parameters of a secret hash. They are
// stored in every hash (PHC string format), so raising them later affects
// only new hashes and old ones still verify.
type Argon2Params struct {
	// Memory in KiB.
	Memory uint32
	// Time is the number of passes over the memory.
	Time uint32
	// Threads is the degree of parallelism.
	Threads uint8
	// SaltLen and KeyLen are the salt and hash lengths in bytes.
	SaltLen, KeyLen uint32
}

// DefaultArgon2 is the second of OWASP's recommended argon2id
// configurations (Password Storage Cheat Sheet): 19 MiB of memory, 2
// passes, 1 thread, a 16-byte salt and a 32-byte hash. One verification
// takes ~20-40 ms of one core and 19 MiB, which is why verifiers cache
// successes (see VerifyCache) and edges must rate-limit failures.
var DefaultArgon2 = Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// maxArgon2Memory bounds the memory a stored hash may ask Verify for, so a
// tampered hash cannot exhaust a verifier: 256 MiB.
const maxArgon2Memory = 256 * 1024

var b64 = base64.RawStdEncoding

// HashSecret hashes secret with argon2id and a random salt, returning the
// PHC string "$argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<hash>"
// (salt and hash in unpadded standard base64).
func HashSecret(secret string, p Argon2Params) string {
	salt := make([]byte, p.SaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(secret), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// VerifySecret reports whether secret matches the PHC string hash from
// HashSecret, comparing in constant time. It returns ErrBadSecret for a
// mismatch and ErrBadToken for a hash it cannot read.
//
// Rate limiting of failed attempts is the caller's job (an edge limits per
// client address and per key id); this function costs a full argon2id
// derivation every time.
func VerifySecret(secret, hash string) error {
	p, salt, want, err := parseHash(hash)
	if err != nil {
		return err
	}
	got := argon2.IDKey([]byte(secret), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrBadSecret
	}
	return nil
}

func parseHash(hash string) (Argon2Params, []byte, []byte, error) {
	bad := func(why string) (Argon2Params, []byte, []byte, error) {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: hash: %s", ErrBadToken, why)
	}
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported version")
	}
	var p Argon2Params
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return bad("parameter " + k)
		}
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return bad("threads")
			}
			p.Threads = uint8(n)
		default:
			return bad("unknown parameter " + k)
		}
	}
	if p.Memory < 8 || p.Memory > maxArgon2Memory || p.Time < 1 || p.Time > 16 || p.Threads < 1 {
		return bad("parameters out of range")
	}
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 {
		return bad("salt or key")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}

// Token kinds: the prefix of a token says what it is, so a leaked token is
// recognisable (secret scanners) and the verifier knows where to look.
const (
	// KindAPIKey prefixes client API keys: "hk_<id>_<secret>".
	KindAPIKey = "hk"
	// KindAdminKey prefixes admin API keys: "hak_<id>_<secret>".
	KindAdminKey = "hak"
)

// idLen is the length of a token id: 16 base32 characters, 80 random bits —
// enough that ids never collide in practice, and they need no coordination.
const idLen = 16

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a random identifier of 16 characters of [a-z2-7], the form
// of key ids. It is public: it names the key in the admin API and in logs.
func NewID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return idEncoding.EncodeToString(b)
}

// ValidKeyID reports whether id has the form NewID returns.
func ValidKeyID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// NewToken returns a new token of the kind (KindAPIKey or KindAdminKey):
// "<kind>_<id>_<secret>", with a fresh id and 256 random bits of secret in
// unpadded base64url. The id is public and locates the key; only the secret
// is hashed and checked.
func NewToken(kind string) (token, id, secret string) {
	id = NewID()
	b := make([]byte, 32)
	rand.Read(b)
	secret = base64.RawURLEncoding.EncodeToString(b)
	return kind + "_" + id + "_" + secret, id, secret
}

// ParseToken splits a token from NewToken into its id and secret; the kind
// must be the expected one. It returns ErrBadToken for anything else.
func ParseToken(kind, token string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(token, kind+"_")
	if !ok || len(rest) < idLen+2 || rest[idLen] != '_' {
		return "", "", fmt.Errorf("%w: not a %s token", ErrBadToken, kind)
	}
	id, secret = rest[:idLen], rest[idLen+1:]
	if !ValidKeyID(id) || secret == "" {
		return "", "", fmt.Errorf("%w: not a %s token", ErrBadToken, kind)
	}
	return id, secret, nil
}
