package ws

import (
	"errors"
	"fmt"
	"time"
)

// Slow-consumer policies (Config.SlowConsumer).
const (
	// SlowConsumerClose closes the connection with CloseCode; the client
	// resubscribes with from and loses nothing.
	SlowConsumerClose = "close"
	// SlowConsumerDrop drops the messages that do not fit and sends a gap
	// frame for each subscription that lost some.
	SlowConsumerDrop = "drop"
)

// Config configures the WebSocket endpoint. The zero value is valid.
type Config struct {
	// QueueSize bounds the messages waiting to be sent per connection;
	// default 1024.
	QueueSize int `name:"queue-size" env:"HERALD_WS_QUEUE_SIZE" placeholder:"N" help:"Messages queued per WebSocket before the slow-consumer policy applies (default 1024)."`
	// SlowConsumer is what happens when the queue is full: "close" (the
	// default) or "drop".
	SlowConsumer string `name:"slow-consumer" env:"HERALD_WS_SLOW_CONSUMER" placeholder:"MODE" help:"WebSocket slow-consumer policy: close (1013) or drop (gap frames)."`
	// CloseCode is the close status for a slow consumer under "close":
	// 1013 (try again later, the default) or 1008 (policy violation).
	CloseCode int `name:"close-code" env:"HERALD_WS_CLOSE_CODE" placeholder:"CODE" help:"The close status for a slow consumer under 'close': 1013 (try again later, the default) or 1008 (policy violation)."`
	// PingInterval is how often the server pings the client; default 20s.
	PingInterval time.Duration `name:"ping-interval" env:"HERALD_WS_PING_INTERVAL" help:"How often the server pings the client; default 20s."`
	// IdleTimeout closes a connection from which nothing (no frame, no
	// pong) arrived for that long; default 60s. Listening clients stay
	// alive by answering pings, which browsers do by themselves.
	IdleTimeout time.Duration `name:"idle-timeout" env:"HERALD_WS_IDLE_TIMEOUT" help:"Closes a connection from which nothing (no frame, no pong) arrived for that long; default 60s."`
	// WriteTimeout bounds writing one frame; a client that does not read
	// is disconnected after it. Default 10s.
	WriteTimeout time.Duration `name:"write-timeout" env:"HERALD_WS_WRITE_TIMEOUT" help:"Bound on writing one frame; a client that does not read is disconnected after it (default 10s)."`
	// MaxFrameSize bounds a client frame (so a published payload, a bit
	// less once base64 is counted); larger ones close with 1009. Default 1 MiB.
	MaxFrameSize int64 `name:"max-frame-size" env:"HERALD_WS_MAX_FRAME_SIZE" placeholder:"BYTES" help:"Bounds a client frame (so a published payload, a bit less once base64 is counted); larger ones close with 1009."`
	// MaxSubscriptions bounds the subscriptions of one connection; default 64.
	MaxSubscriptions int `name:"max-subscriptions" env:"HERALD_WS_MAX_SUBSCRIPTIONS" placeholder:"N" help:"Bounds the subscriptions of one connection; default 64."`
	// MaxInflightPublishes bounds the publishes of one connection sent to
	// the backbone and not yet acknowledged by it; the connection's frames
	// are not read while it is reached. Default 128.
	MaxInflightPublishes int `name:"max-inflight-publishes" env:"HERALD_WS_MAX_INFLIGHT_PUBLISHES" placeholder:"N" help:"Bounds the publishes of one connection sent to the backbone and not yet acknowledged by it; the connection's frames are not read while it is reached."`
	// MaxBadFrames is how many malformed frames in a row are answered with
	// error frames before the connection is closed with 1008; default 5.
	MaxBadFrames int `name:"max-bad-frames" env:"HERALD_WS_MAX_BAD_FRAMES" placeholder:"N" help:"How many malformed frames in a row are answered with error frames before the connection is closed with 1008; default 5."`
	// OriginPatterns lists the browser origins (host patterns, path.Match
	// syntax) allowed besides the request's own host; default none, so that
	// a page elsewhere cannot use a visitor's cookie.
	OriginPatterns []string `name:"origin-patterns" env:"HERALD_WS_ORIGIN_PATTERNS" placeholder:"PATTERN" help:"Lists the browser origins (host patterns, path.Match syntax) allowed besides the request's own host; default none, so that a page elsewhere cannot use a visitor's cookie."`
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.QueueSize == 0 {
		c.QueueSize = 1024
	}
	if c.SlowConsumer == "" {
		c.SlowConsumer = SlowConsumerClose
	}
	if c.CloseCode == 0 {
		c.CloseCode = int(closeTryAgainLater)
	}
	if c.PingInterval == 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = 1 << 20
	}
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = 64
	}
	if c.MaxInflightPublishes == 0 {
		c.MaxInflightPublishes = 128
	}
	if c.MaxBadFrames == 0 {
		c.MaxBadFrames = 5
	}
	return c
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.QueueSize < 0 || c.PingInterval < 0 || c.IdleTimeout < 0 || c.WriteTimeout < 0 ||
		c.MaxFrameSize < 0 || c.MaxSubscriptions < 0 || c.MaxBadFrames < 0 || c.MaxInflightPublishes < 0 {
		return errors.New("ws: negative limit")
	}
	if c.SlowConsumer != SlowConsumerClose && c.SlowConsumer != SlowConsumerDrop {
		return fmt.Errorf("ws: slow_consumer must be %q or %q, got %q", SlowConsumerClose, SlowConsumerDrop, c.SlowConsumer)
	}
	if c.CloseCode != int(closeTryAgainLater) && c.CloseCode != int(closePolicy) {
		return fmt.Errorf("ws: close_code must be 1013 or 1008, got %d", c.CloseCode)
	}
	return nil
}
