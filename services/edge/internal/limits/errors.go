package limits

import (
	"github.com/heraldmq/herald/pkg/fault"
)

// Sentinel errors. Each declares its fault kind, which pkg/fault's table
// maps to every protocol's refusal.
var (
	// ErrConnectionLimit means the tenant holds its maximum of connections
	// across the cluster: MQTT CONNACK 0x97 (quota exceeded; 3.1.1: return
	// code 3), HTTP 429, WebSocket/SSE refused with 429 before upgrade.
	ErrConnectionLimit = fault.New(fault.Quota, "limits: tenant connection limit reached")
	// ErrRateLimited means a publish exceeds the tenant's or the
	// connection's message or byte rate: MQTT 5 PUBACK 0x97 for QoS 1
	// (DISCONNECT 0x96 "message rate too high" for QoS 0, which has no
	// acknowledgement to refuse in), HTTP 429, WebSocket error
	// "rate_limited".
	ErrRateLimited = fault.New(fault.Quota, "limits: message rate limit exceeded")
	// ErrPayloadTooLarge means a payload exceeds the tenant's
	// MaxPayloadBytes: MQTT 5 PUBACK 0x97 (DISCONNECT 0x95 for QoS 0),
	// HTTP 413, WebSocket error "payload_too_large".
	ErrPayloadTooLarge = fault.New(fault.PayloadQuota, "limits: payload too large")
	// ErrSubscriptionLimit means a connection would hold more filters than
	// the tenant's MaxSubscriptionsPerConnection: MQTT SUBACK 0x97 for the
	// filters over the limit, HTTP 429, WebSocket error "rate_limited".
	ErrSubscriptionLimit = fault.New(fault.Quota, "limits: too many subscriptions")
	// ErrServerBusy means the edge sheds load: it holds its maximum of
	// connections or its heap is over the memory limit (Shedder), so a
	// new connection is refused whatever its tenant: MQTT 5 CONNACK 0x89
	// (3.1.1: return code 3, server unavailable), HTTP 503 with
	// Retry-After, WebSocket close 1013 (try again later).
	ErrServerBusy = fault.New(fault.Busy, "limits: server busy")
)
