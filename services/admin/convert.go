package admin

import (
	"fmt"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tenant"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// This file converts between the API's messages and the stored records.
// Secrets and hashes never leave through these conversions.

var actionsToProto = []struct {
	a authz.Action
	p adminv1.Action
}{{authz.Publish, adminv1.Action_ACTION_PUBLISH}, {authz.Subscribe, adminv1.Action_ACTION_SUBSCRIBE}, {authz.History, adminv1.Action_ACTION_HISTORY}}

func capabilitiesProto(cs authz.Capabilities) []*adminv1.Capability {
	out := make([]*adminv1.Capability, 0, len(cs))
	for _, c := range cs {
		pc := &adminv1.Capability{Filter: c.Filter}
		for _, m := range actionsToProto {
			if c.Actions&m.a != 0 {
				pc.Actions = append(pc.Actions, m.p)
			}
		}
		out = append(out, pc)
	}
	return out
}

// capabilities converts and validates; INVALID_ARGUMENT-mapped errors.
func capabilities(ps []*adminv1.Capability) (authz.Capabilities, error) {
	out := make(authz.Capabilities, 0, len(ps))
	for _, p := range ps {
		c := authz.Capability{Filter: p.GetFilter()}
		for _, a := range p.GetActions() {
			found := false
			for _, m := range actionsToProto {
				if m.p == a {
					c.Actions |= m.a
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("%w: action %v", authz.ErrInvalidCapability, a)
			}
		}
		if err := c.Validate(); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func timeProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFrom(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime().UTC()
}

func limitsProto(l tenant.Limits) *adminv1.Limits {
	p := &adminv1.Limits{
		MaxConnections:                 l.MaxConnections,
		MaxMessagesPerSecond:           l.MaxMessagesPerSecond,
		MaxBytesPerSecond:              l.MaxBytesPerSecond,
		MaxConnectionMessagesPerSecond: l.MaxConnectionMessagesPerSecond,
		MaxConnectionBytesPerSecond:    l.MaxConnectionBytesPerSecond,
		MaxPayloadBytes:                l.MaxPayloadBytes,
		MaxSubscriptionsPerConnection:  l.MaxSubscriptionsPerConnection,
		MaxRetainedMessages:            l.MaxRetainedMessages,
		MaxSessions:                    l.MaxSessions,
		MaxQueuedMessages:              l.MaxQueuedMessages,
	}
	if l.ReplayWindow != 0 {
		p.ReplayWindow = durationpb.New(l.ReplayWindow)
	}
	return p
}

func limitsFrom(p *adminv1.Limits) tenant.Limits {
	return tenant.Limits{
		MaxConnections:                 p.GetMaxConnections(),
		MaxMessagesPerSecond:           p.GetMaxMessagesPerSecond(),
		MaxBytesPerSecond:              p.GetMaxBytesPerSecond(),
		MaxConnectionMessagesPerSecond: p.GetMaxConnectionMessagesPerSecond(),
		MaxConnectionBytesPerSecond:    p.GetMaxConnectionBytesPerSecond(),
		MaxPayloadBytes:                p.GetMaxPayloadBytes(),
		MaxSubscriptionsPerConnection:  p.GetMaxSubscriptionsPerConnection(),
		MaxRetainedMessages:            p.GetMaxRetainedMessages(),
		MaxSessions:                    p.GetMaxSessions(),
		MaxQueuedMessages:              p.GetMaxQueuedMessages(),
		ReplayWindow:                   p.GetReplayWindow().AsDuration(),
	}
}

func tenantProto(t tenant.Tenant) *adminv1.Tenant {
	return &adminv1.Tenant{
		Id: t.ID, DisplayName: t.DisplayName, CreateTime: timeProto(t.CreatedAt),
		Revision: t.Revision, Limits: limitsProto(t.Limits),
	}
}

func apiKeyProto(k tenant.APIKey) *adminv1.ApiKey {
	return &adminv1.ApiKey{
		Id: k.ID, Tenant: k.Tenant, Description: k.Description, Capabilities: capabilitiesProto(k.Capabilities),
		CreateTime: timeProto(k.CreatedAt), ExpireTime: timeProto(k.ExpiresAt), Revision: k.Revision,
	}
}

func jwtKeyProto(k tenant.JWTKey) *adminv1.JwtKey {
	return &adminv1.JwtKey{
		Id: k.ID, Tenant: k.Tenant, Description: k.Description, Algorithm: k.Algorithm,
		PublicKeyPem: k.PublicKeyPEM, JwksUrl: k.JWKSURL, Issuer: k.Issuer, Audience: k.Audience,
		CapabilitiesClaim: k.CapabilitiesClaim, DefaultCapabilities: capabilitiesProto(k.DefaultCapabilities),
		CreateTime: timeProto(k.CreatedAt), Revision: k.Revision,
	}
}

func mtlsProto(m tenant.MTLSIdentity) *adminv1.MtlsIdentity {
	return &adminv1.MtlsIdentity{
		Id: m.ID, Tenant: m.Tenant, Description: m.Description, FingerprintSha256: m.FingerprintSHA256,
		Subject: m.Subject, Capabilities: capabilitiesProto(m.Capabilities), CreateTime: timeProto(m.CreatedAt), Revision: m.Revision,
	}
}

func adminKeyProto(k tenant.AdminKey) *adminv1.AdminKey {
	return &adminv1.AdminKey{Id: k.ID, Tenant: k.Tenant, Description: k.Description, CreateTime: timeProto(k.CreatedAt), Revision: k.Revision}
}
