package edge

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/control"
)

// errKicked is the reason a connection closed by an administrator gets.
var errKicked = errors.New("connection closed by an administrator")

// startAdminControl answers the admin API's control requests about live
// connections (backbone.AdminConnections, backbone.AdminKick) from the
// edge's connection registry, for every tenant, over the backbone's
// control plane. It needs authenticated mode (node.Clients); the returned
// function unsubscribes.
func (s *Server) startAdminControl() (stop func(), err error) {
	ctl := s.bb.Control()
	cfg := s.bb.Config()
	clients := s.clients
	tenantOf := func(subject string) string {
		// <prefix>.ctl.<tenant>.admin.<what>; the prefix is one token.
		tok := strings.Split(subject, ".")
		if len(tok) != 5 {
			return ""
		}
		return tok[2]
	}
	reply := func(m *control.Msg, v any) {
		b, err := json.Marshal(v)
		if err == nil {
			err = m.Respond(nil, b)
		}
		if err != nil {
			s.log.Warn("admin control: reply failed", "subject", m.Subject, "err", err)
		}
	}
	list, err := ctl.Subscribe(cfg.AdminControlSubject("*", backbone.AdminConnections), func(m *control.Msg) {
		tenant := tenantOf(m.Subject)
		var req backbone.ConnectionsRequest
		if len(m.Data) > 0 && json.Unmarshal(m.Data, &req) != nil {
			return
		}
		out := backbone.ConnectionsReply{Edge: s.cfg.ID}
		if req.CountOnly {
			out.Count = clients.Count(tenant)
			reply(m, out)
			return
		}
		for _, c := range clients.List(tenant) {
			ci := backbone.ConnectionInfo{ID: c.ID, Protocol: c.Protocol, ClientID: c.Identity.Subject,
				Credential: c.Identity.Credential, Remote: c.Remote, Since: c.Since, Subscriptions: c.Subscriptions}
			if c.Protocol == "mqtt" {
				ci.ClientID = c.ID
			}
			out.Connections = append(out.Connections, ci)
		}
		out.Count = len(out.Connections)
		reply(m, out)
	})
	if err != nil {
		return nil, err
	}
	kick, err := ctl.Subscribe(cfg.AdminControlSubject("*", backbone.AdminKick), func(m *control.Msg) {
		var req backbone.KickRequest
		if json.Unmarshal(m.Data, &req) != nil || req.Edge != s.cfg.ID {
			return
		}
		tenant := tenantOf(m.Subject)
		n := clients.Kick(tenant, req.ID, errKicked)
		s.log.Info("admin control: kicked", "tenant", tenant, "id", req.ID, "connections", n)
		reply(m, backbone.KickReply{Kicked: n})
	})
	if err != nil {
		_ = list.Unsubscribe()
		return nil, err
	}
	return func() {
		_ = list.Unsubscribe()
		_ = kick.Unsubscribe()
	}, nil
}
