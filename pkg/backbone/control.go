package backbone

import (
	"crypto/sha256"
	"encoding/hex"
)

// ClientControlSubject returns the core NATS subject on which the edges
// coordinate about one client of a tenant ("<prefix>.ctl.<tenant>.client.<id>"),
// for example to take a session over from whichever edge holds it. The
// client identifier is hashed (SHA-256, 128 bits, hex) rather than escaped:
// MQTT allows identifiers of up to 65,535 bytes of any UTF-8, and the hash
// keeps every control subject one short, valid token whatever the client
// sent. Control subjects are outside the tenant streams: nothing on them is
// stored.
func (c Config) ClientControlSubject(tenant, clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return c.SubjectPrefix + ".ctl." + tenant + ".client." + hex.EncodeToString(sum[:16])
}

// SharedQueue returns the NATS queue group that balances the live messages
// of a shared subscription (MQTT 5 "$share/<group>/<filter>") of tenant over
// all the edges that have members of it: the same tenant, group and filter
// give the same queue on every edge, so each message goes to one edge. It
// is hashed for the same reason as ClientControlSubject.
func SharedQueue(tenant, group, filter string) string {
	sum := sha256.Sum256([]byte(tenant + "\x00" + group + "\x00" + filter))
	return "herald-share-" + hex.EncodeToString(sum[:16])
}
