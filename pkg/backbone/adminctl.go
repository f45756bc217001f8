package backbone

import "time"

// Admin control requests, answered by every edge over core NATS
// request/reply (nothing is stored): the admin API publishes a request with
// a reply inbox and gathers the replies of all edges for a short while.
const (
	// AdminConnections lists the tenant's connections on each edge:
	// request ConnectionsRequest, reply ConnectionsReply.
	AdminConnections = "connections"
	// AdminKick closes one connection: request KickRequest, reply
	// KickReply, from the named edge only.
	AdminKick = "kick"
)

// AdminControlSubject returns the core NATS subject of an admin control
// request about tenant ("<prefix>.ctl.<tenant>.admin.<what>"); tenant "*"
// gives the subscription for all tenants.
func (c Config) AdminControlSubject(tenant, what string) string {
	return c.SubjectPrefix + ".ctl." + tenant + ".admin." + what
}

// ConnectionsRequest asks edges for a tenant's connections.
type ConnectionsRequest struct {
	// CountOnly asks for the count, not the list.
	CountOnly bool `json:"count_only,omitempty"`
}

// ConnectionsReply is one edge's answer to ConnectionsRequest.
type ConnectionsReply struct {
	Edge        string           `json:"edge"`
	Count       int              `json:"count"`
	Connections []ConnectionInfo `json:"connections,omitempty"`
}

// ConnectionInfo is one client connection on an edge.
type ConnectionInfo struct {
	// ID names the connection on its edge (the MQTT client id, or the
	// transport's id for SSE and WebSocket).
	ID         string    `json:"id"`
	Protocol   string    `json:"protocol"`
	ClientID   string    `json:"client_id,omitempty"`
	Credential string    `json:"credential,omitempty"`
	Remote     string    `json:"remote,omitempty"`
	Since      time.Time `json:"since"`
	// Subscriptions are the topic filters the connection holds.
	Subscriptions []string `json:"subscriptions,omitempty"`
}

// KickRequest asks one edge to close a tenant's connection.
type KickRequest struct {
	// Edge is the edge holding the connection; the others ignore the request.
	Edge string `json:"edge"`
	// ID is ConnectionInfo.ID.
	ID string `json:"id"`
}

// KickReply says how many connections the edge closed.
type KickReply struct {
	Kicked int `json:"kicked"`
}
