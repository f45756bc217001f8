package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldmq/herald/pkg/authz"
	"github.com/heraldmq/herald/pkg/tlsconf"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// conn is how a client command reaches the admin API.
type conn struct {
	Server  string        `default:"127.0.0.1:8081" env:"HERALD_ADMIN_SERVER" help:"Admin API address (host:port), spoken to over gRPC."`
	Token   string        `env:"HERALD_ADMIN_TOKEN" placeholder:"TOKEN" help:"Operator token or admin key (hak_...), sent as a bearer token."`
	Output  string        `short:"o" default:"table" enum:"table,json" help:"Output: table or json."`
	Timeout time.Duration `default:"10s" help:"Deadline of each call."`
	// TLS to a server started with --tls-cert; a client certificate for
	// one started with --tls-client-ca.
	TLS     bool   `name:"tls" env:"HERALD_ADMIN_TLS" help:"Speak TLS to the server, verifying its certificate against the system CAs (or --tls-ca)."`
	TLSCA   string `name:"tls-ca" type:"path" placeholder:"PATH" env:"HERALD_ADMIN_CA" help:"PEM CAs the server's certificate is verified against (implies --tls)."`
	TLSCert string `name:"tls-cert" type:"path" placeholder:"PATH" env:"HERALD_ADMIN_CLIENT_CERT" help:"PEM client certificate, for a server that requires one (mutual TLS; implies --tls)."`
	TLSKey  string `name:"tls-key" type:"path" placeholder:"PATH" env:"HERALD_ADMIN_CLIENT_KEY" help:"PEM private key of --tls-cert."`
}

// credentials are the transport credentials of c: TLS when asked for,
// plain text otherwise.
func (c conn) credentials() (credentials.TransportCredentials, error) {
	if !c.TLS && c.TLSCA == "" && c.TLSCert == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCA != "" {
		pool, err := tlsconf.Pool(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

// dial returns a connection and a context carrying the token and deadline.
func (c conn) dial(ctx context.Context) (*grpc.ClientConn, context.Context, context.CancelFunc, error) {
	creds, err := c.credentials()
	if err != nil {
		return nil, nil, nil, err
	}
	cc, err := grpc.NewClient(c.Server, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	if c.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.Token)
	}
	return cc, ctx, func() { cancel(); cc.Close() }, nil
}

// output prints results.
type output struct{ w io.Writer }

// print writes m as JSON, or as a table of the given columns.
func (o output) print(format string, m proto.Message, header []string, rows [][]string) error {
	if format == "json" {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(o.w, string(b))
		return err
	}
	tw := tabwriter.NewWriter(o.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func tenantRow(t *adminv1.Tenant) []string {
	return []string{t.GetId(), t.GetDisplayName(), fmt.Sprint(t.GetRevision()), fmt.Sprint(t.GetLimits().GetMaxConnections())}
}

var tenantHeader = []string{"ID", "NAME", "REVISION", "MAX_CONNECTIONS"}

func capsString(cs []*adminv1.Capability) string {
	parsed := make([]string, 0, len(cs))
	for _, c := range cs {
		var actions []string
		for _, a := range c.GetActions() {
			actions = append(actions, strings.ToLower(strings.TrimPrefix(a.String(), "ACTION_")))
		}
		parsed = append(parsed, strings.Join(actions, ",")+":"+c.GetFilter())
	}
	return strings.Join(parsed, " ")
}

// capabilitiesFlag parses --capability values into API capabilities.
func capabilitiesFlag(ss []string) ([]*adminv1.Capability, error) {
	caps, err := authz.ParseCapabilities(ss)
	if err != nil {
		return nil, err
	}
	out := make([]*adminv1.Capability, 0, len(caps))
	for _, c := range caps {
		pc := &adminv1.Capability{Filter: c.Filter}
		for _, m := range []struct {
			a authz.Action
			p adminv1.Action
		}{{authz.Publish, adminv1.Action_ACTION_PUBLISH}, {authz.Subscribe, adminv1.Action_ACTION_SUBSCRIBE}, {authz.History, adminv1.Action_ACTION_HISTORY}} {
			if c.Actions&m.a != 0 {
				pc.Actions = append(pc.Actions, m.p)
			}
		}
		out = append(out, pc)
	}
	return out, nil
}

// tokenCmd prints a fresh operator token and its hash.
type tokenCmd struct{}

// Run implements the command.
func (tokenCmd) Run(o output) error {
	b := make([]byte, 32)
	rand.Read(b)
	token := "hop_" + base64.RawURLEncoding.EncodeToString(b)
	_, err := fmt.Fprintf(o.w, "token: %s\nhash:  %s\n\nGive the server the hash (--admin-token-hash or HERALD_ADMIN_TOKEN_HASH)\nand keep the token: clients send it as \"Authorization: Bearer <token>\".\n",
		token, authz.HashSecret(token, authz.DefaultArgon2))
	return err
}

type tenantCmd struct {
	Create tenantCreateCmd `cmd:"" help:"Create a tenant."`
	Get    tenantGetCmd    `cmd:"" help:"Show a tenant."`
	List   tenantListCmd   `cmd:"" help:"List tenants."`
	Update tenantUpdateCmd `cmd:"" help:"Change a tenant's name or limits."`
	Delete tenantDeleteCmd `cmd:"" help:"Delete a tenant, its credentials and its data (retained messages, history, sessions, stream)."`
}

type tenantCreateCmd struct {
	conn
	ID             string `arg:"" help:"Tenant id: [a-z0-9][a-z0-9_-]{0,62}."`
	Name           string `placeholder:"NAME" help:"Display name."`
	MaxConnections int64  `placeholder:"N" help:"Connection limit (0: none)."`
}

// Run implements the command.
func (c tenantCreateCmd) Run(ctx context.Context, o output) error {
	cc, ctx, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	t, err := adminv1.NewTenantServiceClient(cc).CreateTenant(ctx, &adminv1.CreateTenantRequest{Tenant: &adminv1.Tenant{
		Id: c.ID, DisplayName: c.Name, Limits: &adminv1.Limits{MaxConnections: c.MaxConnections},
	}})
	if err != nil {
		return err
	}
	return o.print(c.Output, t, tenantHeader, [][]string{tenantRow(t)})
}

type tenantGetCmd struct {
	conn
	ID string `arg:""`
}

// Run implements the command.
func (c tenantGetCmd) Run(ctx context.Context, o output) error {
	cc, ctx, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	t, err := adminv1.NewTenantServiceClient(cc).GetTenant(ctx, &adminv1.GetTenantRequest{Id: c.ID})
	if err != nil {
		return err
	}
	return o.print(c.Output, t, tenantHeader, [][]string{tenantRow(t)})
}

type tenantListCmd struct {
	conn
}

// Run implements the command; it follows every page.
func (c tenantListCmd) Run(ctx context.Context, o output) error {
	cc, ctx, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	all := &adminv1.ListTenantsResponse{}
	for token := ""; ; {
		page, err := adminv1.NewTenantServiceClient(cc).ListTenants(ctx, &adminv1.ListTenantsRequest{PageToken: token})
		if err != nil {
			return err
		}
		all.Tenants = append(all.Tenants, page.GetTenants()...)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	var rows [][]string
	for _, t := range all.GetTenants() {
		rows = append(rows, tenantRow(t))
	}
	return o.print(c.Output, all, tenantHeader, rows)
}

type tenantUpdateCmd struct {
	conn
	ID             string `arg:""`
	Name           *string
	MaxConnections *int64 `placeholder:"N" help:"Connection limit (0: none)."`
	Revision       int64  `placeholder:"REVISION" help:"Only if the tenant is still at this revision (etag)."`
}

// Run implements the command; only the flags given are changed.
func (c tenantUpdateCmd) Run(ctx context.Context, o output) error {
	cc, ctx, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	t := &adminv1.Tenant{Id: c.ID, Revision: c.Revision, Limits: &adminv1.Limits{}}
	mask := &fieldmaskpb.FieldMask{}
	if c.Name != nil {
		t.DisplayName = *c.Name
		mask.Paths = append(mask.Paths, "display_name")
	}
	if c.MaxConnections != nil {
		t.Limits.MaxConnections = *c.MaxConnections
		mask.Paths = append(mask.Paths, "limits.max_connections")
	}
	if len(mask.Paths) == 0 {
		return fmt.Errorf("nothing to change: give --name or --max-connections")
	}
	up, err := adminv1.NewTenantServiceClient(cc).UpdateTenant(ctx, &adminv1.UpdateTenantRequest{Tenant: t, UpdateMask: mask})
	if err != nil {
		return err
	}
	return o.print(c.Output, up, tenantHeader, [][]string{tenantRow(up)})
}

type tenantDeleteCmd struct {
	conn
	ID string `arg:""`
}

// Run implements the command.
func (c tenantDeleteCmd) Run(ctx context.Context, o output) error {
	cc, ctx, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	_, err = adminv1.NewTenantServiceClient(cc).DeleteTenant(ctx, &adminv1.DeleteTenantRequest{Id: c.ID})
	return err
}

type keyCmd struct {
	Create keyCreateCmd `cmd:"" help:"Create an API key; its token is printed once."`
	List   keyListCmd   `cmd:"" help:"List a tenant's API keys."`
	Revoke keyRevokeCmd `cmd:"" help:"Revoke an API key."`
}

var keyHeader = []string{"ID", "TENANT", "DESCRIPTION", "CAPABILITIES"}

func keyRow(k *adminv1.ApiKey) []string {
	return []string{k.GetId(), k.GetTenant(), k.GetDescription(), capsString(k.GetCapabilities())}
}

type keyCreateCmd struct {
	conn
	Tenant      string   `arg:""`
	Description string   `placeholder:"TEXT" help:"Free text."`
	Capability  []string `short:"c" help:"Capability '<actions>:<filter>', e.g. 'publish,subscribe:sensors/#' (repeatable)." sep:"none"`
}

// Run implements the command.
func (c keyCreateCmd) Run(ctx context.Context, o output) error {
	caps, err := capabilitiesFlag(c.Capability)
	if err != nil {
		return err
	}
	cc, ctx, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := adminv1.NewCredentialServiceClient(cc).CreateApiKey(ctx, &adminv1.CreateApiKeyRequest{Tenant: c.Tenant, Description: c.Description, Capabilities: caps})
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return o.print(c.Output, resp, nil, nil)
	}
	if err := o.print(c.Output, resp.GetKey(), keyHeader, [][]string{keyRow(resp.GetKey())}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(o.w, "\ntoken (shown once): %s\n", resp.GetToken())
	return err
}

type keyListCmd struct {
	conn
	Tenant string `arg:""`
}

// Run implements the command; it follows every page.
func (c keyListCmd) Run(ctx context.Context, o output) error {
	cc, ctx, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	all := &adminv1.ListApiKeysResponse{}
	for token := ""; ; {
		page, err := adminv1.NewCredentialServiceClient(cc).ListApiKeys(ctx, &adminv1.ListApiKeysRequest{Tenant: c.Tenant, PageToken: token})
		if err != nil {
			return err
		}
		all.Keys = append(all.Keys, page.GetKeys()...)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	var rows [][]string
	for _, k := range all.GetKeys() {
		rows = append(rows, keyRow(k))
	}
	return o.print(c.Output, all, keyHeader, rows)
}

type keyRevokeCmd struct {
	conn
	Tenant string `arg:""`
	ID     string `arg:""`
}

// Run implements the command.
func (c keyRevokeCmd) Run(ctx context.Context) error {
	cc, ctx, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	_, err = adminv1.NewCredentialServiceClient(cc).RevokeApiKey(ctx, &adminv1.RevokeApiKeyRequest{Tenant: c.Tenant, Id: c.ID})
	return err
}

type adminKeyCmd struct {
	Create adminKeyCreateCmd `cmd:"" help:"Create an admin key; its token is printed once."`
}

type adminKeyCreateCmd struct {
	conn
	Tenant      string `placeholder:"TENANT" help:"Scope the key to this tenant; empty for an operator key."`
	Description string `placeholder:"TEXT" help:"Free text."`
}

// Run implements the command.
func (c adminKeyCreateCmd) Run(ctx context.Context, o output) error {
	cc, ctx, done, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := adminv1.NewAdminKeyServiceClient(cc).CreateAdminKey(ctx, &adminv1.CreateAdminKeyRequest{Tenant: c.Tenant, Description: c.Description})
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return o.print(c.Output, resp, nil, nil)
	}
	_, err = fmt.Fprintf(o.w, "admin key %s (tenant %q)\ntoken (shown once): %s\n", resp.GetKey().GetId(), resp.GetKey().GetTenant(), resp.GetToken())
	return err
}
