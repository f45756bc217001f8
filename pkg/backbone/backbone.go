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

	"github.com/nats-io/nats.go/jetstream"
)

// Sentinel errors.
var (
	// ErrBadTenant is returned for a tenant id that is not [a-z0-9][a-z0-9_-]{0,62}.
	ErrBadTenant = errors.New("backbone: invalid tenant id")
	// ErrNotStored is returned when JetStream did not acknowledge a publish;
	// the message must be treated as not accepted.
	ErrNotStored = errors.New("backbone: message not stored")
	// ErrNoStream is returned when a tenant has no stream yet.
	ErrNoStream = errors.New("backbone: tenant has no stream")
	// ErrIncompleteRead is returned by Range when the stream did not
	// deliver messages it said it holds within the publish timeout; the
	// caller retries, nothing is skipped.
	ErrIncompleteRead = errors.New("backbone: stream read incomplete")
)

var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidTenant reports whether id can name a tenant: it becomes a NATS subject
// token, a stream name suffix and a Redis hash tag, so the alphabet is narrow.
func ValidTenant(id string) bool { return tenantRE.MatchString(id) }

// Config configures the JetStream backbone.
type Config struct {
	// SubjectPrefix is the first subject token of every Herald subject; default "herald".
	SubjectPrefix string `yaml:"subject_prefix"`
	// Replicas is the stream replication factor; default 1 (use 3 on a NATS cluster).
	Replicas int `yaml:"replicas"`
	// MaxAge bounds how long the stream keeps messages (the source of truth
	// that replay buffers are rebuilt from); default 24h.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBytes bounds each tenant stream; default 1 GiB. The oldest messages
	// are discarded first.
	MaxBytes int64 `yaml:"max_bytes"`
	// MemoryStorage keeps streams in memory instead of on disk (tests only).
	MemoryStorage bool `yaml:"memory_storage"`
	// PublishTimeout bounds the wait for a JetStream acknowledgement; default 5s.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// MaxPendingPublishes bounds the asynchronous publishes awaiting their
	// acknowledgement per backbone; default 16384. When it is reached,
	// PublishAsync waits (back-pressure onto the publishing connections).
	MaxPendingPublishes int `yaml:"max_pending_publishes"`
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
