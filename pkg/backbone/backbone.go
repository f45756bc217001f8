// Package backbone carries Herald messages over NATS JetStream.
//
// Each tenant has one stream, HERALD_<tenant>, capturing the subjects
// "<prefix>.in.<tenant>.<escaped topic>". The stream republishes every stored
// message to "<prefix>.live.<tenant>.<escaped topic>" with its sequence in the
// Nats-Sequence header, so edges take live interest with plain core NATS
// subscriptions (ref-counted, no JetStream consumer per subscriber) and still
// learn each message's stream position. Readers that must see history (SSE
// resume, the session service) use JetStream consumers on the stream.
//
// One stream per tenant, rather than one shared stream, keeps sequences
// private to a tenant (a shared sequence would leak other tenants' traffic
// volume through the gaps), gives each tenant its own retention limits and
// epoch, and makes deleting a tenant one stream deletion.
package backbone

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/heraldmq/herald/pkg/fault"
	"github.com/nats-io/nats.go/jetstream"
)

// Sentinel errors.
var (
	// ErrBadTenant is returned for a tenant id that is not [a-z0-9][a-z0-9_-]{0,62}.
	ErrBadTenant = fault.New(fault.Invalid, "backbone: invalid tenant id")
	// ErrNotStored is returned when JetStream did not acknowledge a publish;
	// the message must be treated as not accepted.
	ErrNotStored = fault.New(fault.Unavailable, "backbone: message not stored")
	// ErrUnavailable wraps every error of NATS and JetStream that a
	// backbone call returns: the backbone classifies them at its boundary,
	// so that its callers need not know NATS to tell a client to retry.
	ErrUnavailable = fault.New(fault.Unavailable, "backbone: unavailable")
	// ErrNoStream is returned when a tenant has no stream yet.
	ErrNoStream = fault.New(fault.Unavailable, "backbone: tenant has no stream")
	// ErrIncompleteRead is returned by Range when the stream did not
	// deliver messages it said it holds within the publish timeout; the
	// caller retries, nothing is skipped.
	ErrIncompleteRead = fault.New(fault.Unavailable, "backbone: stream read incomplete")
)

// unavailable classifies an error of NATS or JetStream as ErrUnavailable;
// errors of Herald's own (declaring a fault kind) pass as they are.
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	if fault.Declared(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidTenant reports whether id can name a tenant: it becomes a NATS subject
// token, a stream name suffix and a Redis hash tag, so the alphabet is narrow.
func ValidTenant(id string) bool { return tenantRE.MatchString(id) }

// Config configures the JetStream backbone. The kong tags make it the
// flags and environment of every command that connects to NATS (and of
// their YAML files, keyed by the flag names).
type Config struct {
	// SubjectPrefix is the first subject token of every Herald subject; default "herald".
	SubjectPrefix string `name:"subject-prefix" env:"HERALD_SUBJECT_PREFIX" placeholder:"PREFIX" help:"First token of every Herald NATS subject (default herald)."`
	// Replicas is the stream replication factor; default 1 (use 3 on a NATS cluster).
	Replicas int `name:"stream-replicas" env:"HERALD_STREAM_REPLICAS" placeholder:"N" help:"The stream replication factor; default 1 (use 3 on a NATS cluster)."`
	// MaxAge bounds how long the stream keeps messages (the source of truth
	// that replay buffers are rebuilt from); default 24h.
	MaxAge time.Duration `name:"stream-max-age" env:"HERALD_STREAM_MAX_AGE" help:"Bounds how long the stream keeps messages (the source of truth that replay buffers are rebuilt from); default 24h."`
	// MaxBytes bounds each tenant stream; default 1 GiB. The oldest messages
	// are discarded first.
	MaxBytes int64 `name:"stream-max-bytes" env:"HERALD_STREAM_MAX_BYTES" placeholder:"BYTES" help:"Bounds each tenant stream; default 1 GiB."`
	// MemoryStorage keeps streams in memory instead of on disk (tests only).
	MemoryStorage bool `kong:"-"`
	// PublishTimeout bounds the wait for a JetStream acknowledgement; default 5s.
	PublishTimeout time.Duration `name:"publish-timeout" env:"HERALD_PUBLISH_TIMEOUT" help:"Bounds the wait for a JetStream acknowledgement; default 5s."`
	// MaxPendingPublishes bounds the asynchronous publishes awaiting their
	// acknowledgement per backbone; default 16384. When it is reached,
	// PublishAsync waits (back-pressure onto the publishing connections).
	MaxPendingPublishes int `name:"max-pending-publishes" env:"HERALD_MAX_PENDING_PUBLISHES" placeholder:"N" help:"Bounds the asynchronous publishes awaiting their acknowledgement per backbone; default 16384."`
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "herald"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 1 << 30
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MaxPendingPublishes == 0 {
		c.MaxPendingPublishes = 16384
	}
	return c
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(c.SubjectPrefix) {
		return fmt.Errorf("backbone: subject_prefix %q must be one subject token", c.SubjectPrefix)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("backbone: replicas must be 1..5, got %d", c.Replicas)
	}
	if c.MaxAge < 0 || c.MaxBytes < 0 || c.PublishTimeout < 0 || c.MaxPendingPublishes < 0 {
		return errors.New("backbone: negative limit")
	}
	return nil
}

// StreamName returns the JetStream stream of a tenant.
func StreamName(tenant string) string { return "HERALD_" + tenant }

// InSubject returns the subject prefix a tenant's publishes go to.
func (c Config) InSubject(tenant string) string { return c.SubjectPrefix + ".in." + tenant }

// LiveSubject returns the subject prefix a tenant's stored messages are republished on.
func (c Config) LiveSubject(tenant string) string { return c.SubjectPrefix + ".live." + tenant }

func (c Config) streamConfig(tenant string) jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if c.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        StreamName(tenant),
		Description: "Herald messages of tenant " + tenant,
		Subjects:    []string{c.InSubject(tenant) + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		Storage:     storage,
		Replicas:    c.Replicas,
		Duplicates:  2 * time.Minute,
		RePublish: &jetstream.RePublish{
			Source:      c.InSubject(tenant) + ".>",
			Destination: c.LiveSubject(tenant) + ".>",
		},
		AllowDirect: true,
	}
}

// epochOf derives a stream's epoch from its creation time: recreating the
// stream (and so restarting its sequence) always changes the epoch.
func epochOf(info *jetstream.StreamInfo) string {
	return strconv.FormatInt(info.Created.UnixMilli(), 36)
}

// ensureStream creates the tenant's stream if it is missing and returns its info.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg Config, tenant string) (*jetstream.StreamInfo, error) {
	if !ValidTenant(tenant) {
		return nil, ErrBadTenant
	}
	s, err := js.Stream(ctx, StreamName(tenant))
	if err == nil {
		return s.CachedInfo(), nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, err
	}
	s, err = js.CreateStream(ctx, cfg.streamConfig(tenant))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another edge created it first.
		s, err = js.Stream(ctx, StreamName(tenant))
	}
	if err != nil {
		return nil, fmt.Errorf("backbone: create stream for %s: %w", tenant, err)
	}
	return s.CachedInfo(), nil
}
