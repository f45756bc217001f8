package sse

import (
	"errors"
	"strings"
	"time"
)

// Config configures the SSE endpoint. The zero value is valid.
type Config struct {
	// Retry is the reconnection delay sent in the stream's retry: field;
	// default 2s.
	Retry time.Duration `name:"retry" env:"HERALD_SSE_RETRY" help:"The reconnection delay sent in the stream's retry: field; default 2s."`
	// Heartbeat is the interval of ": ping" comments on a quiet stream,
	// which keep proxies from closing it; default 15s.
	Heartbeat time.Duration `name:"heartbeat" env:"HERALD_SSE_HEARTBEAT" help:"Interval of SSE heartbeat comments (default 15s)."`
	// QueueSize bounds the messages waiting to be written per connection;
	// default 1024. A stream whose queue overflows is closed.
	QueueSize int `name:"queue-size" env:"HERALD_SSE_QUEUE_SIZE" placeholder:"N" help:"Messages queued per SSE stream before it is closed as slow (default 1024)."`
	// EventName is the event: field of messages; default "message", which
	// EventSource hands to onmessage.
	EventName string `name:"event-name" env:"HERALD_SSE_EVENT_NAME" placeholder:"NAME" help:"SSE event name of messages (default message)."`
	// EventTopic names each message event after its topic instead
	// ("event: sensors/kitchen/temp"). EventSource hands named events only
	// to listeners added with addEventListener(<topic>), never to
	// onmessage. A topic that cannot be an event name (one containing CR
	// or LF, or "gap") keeps EventName.
	EventTopic bool `name:"event-topic" env:"HERALD_SSE_EVENT_TOPIC" help:"Name SSE events after their topic (clients need addEventListener)."`
	// WriteTimeout bounds writing one batch of events; default 10s.
	WriteTimeout time.Duration `name:"write-timeout" env:"HERALD_SSE_WRITE_TIMEOUT" help:"Bounds writing one batch of events; default 10s."`
	// MaxFilters bounds the topic filters of one stream; default 32.
	MaxFilters int `name:"max-filters" env:"HERALD_SSE_MAX_FILTERS" placeholder:"N" help:"Bounds the topic filters of one stream; default 32."`
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Retry == 0 {
		c.Retry = 2 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.QueueSize == 0 {
		c.QueueSize = 1024
	}
	if c.EventName == "" {
		c.EventName = "message"
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxFilters == 0 {
		c.MaxFilters = 32
	}
	return c
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.Retry < 0 || c.Heartbeat < 0 || c.QueueSize < 0 || c.WriteTimeout < 0 || c.MaxFilters < 0 {
		return errors.New("sse: negative limit")
	}
	if strings.ContainsAny(c.EventName, "\r\n") || c.EventName == gapEvent {
		return errors.New("sse: event_name must be one line and not \"gap\"")
	}
	return nil
}
