// Command herald-edge runs one Herald edge in cluster mode: MQTT, SSE,
// WebSocket and HTTP publish in front of an external NATS JetStream, reading
// retained messages and replay buffers from Redis.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/heraldmq/herald/pkg/backbone"
	"github.com/heraldmq/herald/pkg/config"
	"github.com/heraldmq/herald/pkg/ops"
	"github.com/heraldmq/herald/pkg/store"
	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/tenant"
	"github.com/heraldmq/herald/services/edge"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type cli struct {
	Config           kong.ConfigFlag `help:"YAML configuration file (keys are the flag names)." type:"path"`
	ID               string          `help:"Edge id (default: random)." env:"HERALD_EDGE_ID"`
	NATSURL          string          `name:"nats-url" help:"NATS server URL(s), comma-separated." default:"nats://127.0.0.1:4222" env:"HERALD_NATS_URL"`
	RedisAddrs       []string        `help:"Redis address(es); several mean Redis Cluster." default:"127.0.0.1:6379" env:"HERALD_REDIS_ADDRS"`
	RedisPrefix      string          `help:"Redis key prefix." default:"herald" env:"HERALD_REDIS_PREFIX"`
	RedisMasterName  string          `help:"Sentinel master name: --redis-addrs are then Sentinels and the client follows failovers." env:"HERALD_REDIS_MASTER_NAME"`
	RedisUsername    string          `help:"Redis ACL user name." env:"HERALD_REDIS_USERNAME"`
	RedisPassword    string          `help:"Redis password (prefer the environment variable to the flag)." env:"HERALD_REDIS_PASSWORD"`
	SentinelUsername string          `name:"redis-sentinel-username" help:"ACL user name for the Sentinels of --redis-master-name." env:"HERALD_REDIS_SENTINEL_USERNAME"`
	SentinelPassword string          `name:"redis-sentinel-password" help:"Password of the Sentinels of --redis-master-name (prefer the environment variable to the flag)." env:"HERALD_REDIS_SENTINEL_PASSWORD"`
	RedisTLS         bool            `name:"redis-tls" help:"Connect to Redis over TLS, verified against the system CAs (extended by SSL_CERT_FILE, SSL_CERT_DIR)." env:"HERALD_REDIS_TLS"`
	MQTTAddr         string          `name:"mqtt-addr" help:"MQTT/TCP listen address." default:"127.0.0.1:1883" env:"HERALD_MQTT_ADDR"`
	HTTPAddr         string          `name:"http-addr" help:"HTTP listen address (/sse, /ws, /mqtt, /publish, /poll)." default:"127.0.0.1:8080" env:"HERALD_HTTP_ADDR"`
	MQTTSessionLease time.Duration   `name:"mqtt-session-lease" help:"Lease of a connected MQTT session; bounds how late a dead edge's wills fire (default 10s)." env:"HERALD_MQTT_SESSION_LEASE"`
	MQTTSessionSave  time.Duration   `name:"mqtt-session-save-interval" help:"Most frequent save of a live session's cursor (default 1s)." env:"HERALD_MQTT_SESSION_SAVE_INTERVAL"`
	MQTTMaxExpiry    time.Duration   `name:"mqtt-max-session-expiry" help:"Cap of MQTT session expiry, and the expiry of 3.1.1 persistent sessions (default 24h)." env:"HERALD_MQTT_MAX_SESSION_EXPIRY"`
	MQTTMaxOffline   int             `name:"mqtt-max-offline-messages" help:"Most messages sent to a resuming session; older ones are skipped and counted (default 10000)." env:"HERALD_MQTT_MAX_OFFLINE_MESSAGES"`
	MQTTTLSAddr      string          `name:"mqtt-tls-addr" help:"Also serve MQTT over TLS here (needs --tls-cert and --tls-key), e.g. 127.0.0.1:8883." env:"HERALD_MQTT_TLS_ADDR"`
	TLSCert          string          `name:"tls-cert" help:"PEM certificate: serve HTTP over TLS (HTTP/2 and HTTP/1.1)." type:"path" env:"HERALD_TLS_CERT"`
	TLSKey           string          `name:"tls-key" help:"PEM private key of --tls-cert." type:"path" env:"HERALD_TLS_KEY"`
	TLSClientCA      string          `name:"tls-client-ca" help:"PEM CAs that client certificates are verified against (then also matched by subject); without it certificates match by fingerprint." type:"path" env:"HERALD_TLS_CLIENT_CA"`
	H2C              bool            `name:"h2c" help:"Also serve HTTP/2 without TLS (prior knowledge) on the HTTP address." env:"HERALD_H2C"`
	CORSOrigins      []string        `name:"cors-origins" help:"Browser origins allowed cross-origin (scheme://host[:port], patterns, or *); they may also open WebSockets." env:"HERALD_CORS_ORIGINS"`
	CORSCredentials  bool            `name:"cors-credentials" help:"Let allowed origins send cookies and credentials." env:"HERALD_CORS_CREDENTIALS"`
	Demo             string          `help:"Serve the example page at /: auto (when --anonymous-tenant is set), on, off." default:"auto" enum:"auto,on,off" env:"HERALD_DEMO"`
	SSEEventName     string          `name:"sse-event-name" help:"SSE event name of messages (default message)." env:"HERALD_SSE_EVENT_NAME"`
	SSEEventTopic    bool            `name:"sse-event-topic" help:"Name SSE events after their topic (clients need addEventListener)." env:"HERALD_SSE_EVENT_TOPIC"`
	SSEHeartbeat     time.Duration   `name:"sse-heartbeat" help:"Interval of SSE heartbeat comments (default 15s)." env:"HERALD_SSE_HEARTBEAT"`
	SSEQueueSize     int             `name:"sse-queue-size" help:"Messages queued per SSE stream before it is closed as slow (default 1024)." env:"HERALD_SSE_QUEUE_SIZE"`
	WSQueueSize      int             `name:"ws-queue-size" help:"Messages queued per WebSocket before the slow-consumer policy applies (default 1024)." env:"HERALD_WS_QUEUE_SIZE"`
	WSSlowConsumer   string          `name:"ws-slow-consumer" help:"WebSocket slow-consumer policy: close (1013) or drop (gap frames)." default:"close" enum:"close,drop" env:"HERALD_WS_SLOW_CONSUMER"`
	HTTPReadHeader   time.Duration   `name:"http-read-header-timeout" help:"Bound on reading an HTTP request's headers." default:"10s" env:"HERALD_HTTP_READ_HEADER_TIMEOUT"`
	HTTPIdle         time.Duration   `name:"http-idle-timeout" help:"An HTTP keep-alive connection without a request for this long is closed." default:"60s" env:"HERALD_HTTP_IDLE_TIMEOUT"`
	HTTPBody         time.Duration   `name:"http-body-timeout" help:"Bound on reading a publish's body; slower is 408 and the connection closed." default:"30s" env:"HERALD_HTTP_BODY_TIMEOUT"`
	HTTPMaxUnauth    int             `name:"http-max-unauthenticated-per-source" help:"Most HTTP connections one source address (IPv6: /64) holds before one of their requests authenticated; more are closed at accept (-1: no bound)." default:"256" env:"HERALD_HTTP_MAX_UNAUTHENTICATED_PER_SOURCE"`
	OpsAddr          string          `help:"Ops listen address (/healthz, /readyz, /metrics, pprof)." default:"127.0.0.1:9090" env:"HERALD_OPS_ADDR"`
	DrainTimeout     time.Duration   `name:"drain-timeout" help:"On SIGTERM or SIGINT: readiness turns false, listeners close, clients are asked to leave over the first half of this, and the edge exits when they are gone or at its end; a second signal exits at once." default:"20s" env:"HERALD_DRAIN_TIMEOUT"`
	DrainReference   string          `name:"drain-reference" help:"Server Reference sent to MQTT 5 clients with DISCONNECT 0x9C (use another server) when draining, instead of 0x8B (server shutting down)." env:"HERALD_DRAIN_REFERENCE"`
	EtcdEndpoints    []string        `name:"etcd-endpoints" help:"etcd endpoints holding tenants, credentials and limits: authenticated mode. Empty: no tenants (only --anonymous-tenant)." env:"HERALD_ETCD_ENDPOINTS"`
	EtcdPrefix       string          `name:"etcd-prefix" help:"etcd key prefix of Herald's tenants." default:"/herald/" env:"HERALD_ETCD_PREFIX"`
	EtcdUsername     string          `name:"etcd-username" help:"etcd user name (https:// endpoints speak TLS)." env:"HERALD_ETCD_USERNAME"`
	EtcdPassword     string          `name:"etcd-password" help:"etcd password (prefer the environment variable to the flag)." env:"HERALD_ETCD_PASSWORD"`
	AnonymousTenant  string          `help:"Admit clients without credentials into this tenant (development only)." env:"HERALD_ANONYMOUS_TENANT"`
	JWKS             edge.JWKSFlags  `embed:"" prefix:"jwks-"`
	SubjectPrefix    string          `help:"First token of every Herald NATS subject." default:"herald" env:"HERALD_SUBJECT_PREFIX"`
	StreamReplicas   int             `help:"JetStream replicas of tenant streams." default:"1" env:"HERALD_STREAM_REPLICAS"`
	MaxConnections   int             `help:"Most client connections of this edge, all tenants; more are refused as server busy (MQTT 0x89, HTTP 503, WebSocket 1013); 0: no bound." env:"HERALD_MAX_CONNECTIONS"`
	MemoryLimit      int64           `help:"Heap bytes past which new connections are refused as server busy (0: 0.8 of GOMEMLIMIT if set, else none)." env:"HERALD_MEMORY_LIMIT"`
	LogFormat        string          `help:"Log format: json or text." default:"json" enum:"json,text" env:"HERALD_LOG_FORMAT"`
	LogLevel         string          `help:"Log level." default:"info" env:"HERALD_LOG_LEVEL"`
	Telemetry        telemetry.Flags `embed:""`

	// NATS credentials apart from --nats-url: --nats-user, --nats-password.
	NATS backbone.Credentials `embed:""`
}

func main() {
	var c cli
	kong.Parse(&c, kong.Name("herald-edge"), kong.Description("Herald edge gateway."), kong.Configuration(config.YAML))
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "herald-edge:", err)
		os.Exit(1)
	}
}

func run(c cli) error {
	log := ops.NewLogger(os.Stderr, c.LogFormat, c.LogLevel)
	// ctx ends on the first signal, which starts the drain; the ops server
	// and the backbone stay up until the edge has drained.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tel, err := c.Telemetry.Setup(ctx, "herald-edge", c.ID)
	if err != nil {
		return err
	}
	defer tel.Close()
	log = telemetry.NewLogger(log)
	p := tel.Providers()

	var srv atomic.Pointer[edge.Server]
	nc, err := backbone.Connect(c.NATSURL, "herald-edge", func(conn *nats.Conn, sub *nats.Subscription, err error) {
		if s := srv.Load(); s != nil {
			s.AsyncErrorHandler()(conn, sub, err)
		}
	}, c.NATS.Options()...)
	if err != nil {
		return err
	}
	defer nc.Close()
	bb, err := backbone.New(nc, backbone.Config{SubjectPrefix: c.SubjectPrefix, Replicas: c.StreamReplicas}, backbone.WithTelemetry(p))
	if err != nil {
		return err
	}
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: c.RedisAddrs, MasterName: c.RedisMasterName,
		Username: c.RedisUsername, Password: c.RedisPassword, TLSConfig: store.RedisTLSConfig(c.RedisTLS),
		SentinelUsername: c.SentinelUsername, SentinelPassword: c.SentinelPassword})
	defer rdb.Close()
	rdb.AddHook(telemetry.RedisHook(p))
	st := store.NewRedis(rdb, store.RedisConfig{KeyPrefix: c.RedisPrefix})

	if c.AnonymousTenant != "" {
		log.Warn("ANONYMOUS CLIENTS ARE ADMITTED into tenant " + c.AnonymousTenant + ": for development only")
	}
	cfg := edge.Config{ID: c.ID, MQTTAddr: c.MQTTAddr, HTTPAddr: c.HTTPAddr, AnonymousTenant: c.AnonymousTenant,
		H2C: c.H2C, Demo: c.Demo, Drain: edge.DrainConfig{Timeout: c.DrainTimeout, Reference: c.DrainReference}}
	cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile = c.TLSCert, c.TLSKey, c.TLSClientCA
	cfg.MQTTTLSAddr = c.MQTTTLSAddr
	cfg.MQTT.SessionLease, cfg.MQTT.SessionSaveInterval = c.MQTTSessionLease, c.MQTTSessionSave
	cfg.MQTT.MaxSessionExpiry, cfg.MQTT.MaxOfflineMessages = c.MQTTMaxExpiry, c.MQTTMaxOffline
	cfg.CORS.AllowedOrigins, cfg.CORS.AllowCredentials = c.CORSOrigins, c.CORSCredentials
	cfg.SSE.EventName, cfg.SSE.EventTopic = c.SSEEventName, c.SSEEventTopic
	cfg.SSE.Heartbeat, cfg.SSE.QueueSize = c.SSEHeartbeat, c.SSEQueueSize
	cfg.WS.QueueSize, cfg.WS.SlowConsumer = c.WSQueueSize, c.WSSlowConsumer
	cfg.Shed = edge.ShedConfig{MaxConnections: c.MaxConnections, MemoryLimit: c.MemoryLimit}
	cfg.HTTP = edge.HTTPConfig{ReadHeaderTimeout: c.HTTPReadHeader, IdleTimeout: c.HTTPIdle, BodyTimeout: c.HTTPBody,
		MaxUnauthenticatedPerSource: c.HTTPMaxUnauth}
	cfg.JWKS = c.JWKS.Config()
	opts := []edge.Option{edge.WithTelemetry(p)}
	if len(c.EtcdEndpoints) > 0 {
		cli, err := clientv3.New(clientv3.Config{Endpoints: c.EtcdEndpoints, DialTimeout: 5 * time.Second,
			Username: c.EtcdUsername, Password: c.EtcdPassword, DialOptions: telemetry.EtcdDialOptions(p)})
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		defer cli.Close()
		tenants, err := tenant.NewEtcd(cli, tenant.EtcdConfig{Prefix: c.EtcdPrefix}, log)
		if err != nil {
			return err
		}
		opts = append(opts, edge.WithTenants(tenants, rdb))
		log.Info("authenticated mode: tenants from etcd", "endpoints", strings.Join(c.EtcdEndpoints, ","), "prefix", c.EtcdPrefix)
	}
	s, err := edge.New(cfg, bb, st, log, opts...)
	if err != nil {
		return err
	}
	srv.Store(s)

	o := ops.New()
	o.AddCheck("nats", backbone.Connected(nc))
	o.AddCheck("redis", func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	o.AddCheck("edge", s.Ready)
	o.Handle("GET /metrics", tel.MetricsHandler())
	opsCtx, opsStop := context.WithCancel(context.Background())
	defer opsStop()
	opsErr := make(chan error, 1)
	go func() { opsErr <- o.Serve(opsCtx, c.OpsAddr) }()

	// The first signal starts the drain; a second one ends the process at
	// once (stop gives the signals their default action back).
	context.AfterFunc(ctx, stop)
	err = s.RunDraining(ctx)
	opsStop()
	if oerr := <-opsErr; err == nil {
		err = oerr
	}
	return err
}
