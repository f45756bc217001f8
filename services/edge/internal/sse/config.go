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
	Retry time.Duration `yaml:"retry"`
	// Heartbeat is the interval of ": ping" comments on a quiet stream,
	// which keep proxies from closing it; default 15s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// QueueSize bounds the messages waiting to be written per connection;
	// default 1024. A stream whose queue overflows is closed.
	QueueSize int `yaml:"queue_size"`
	// EventName is the event: field of messages; default "message", which
	// EventSource hands to onmessage.
	EventName string `yaml:"event_name"`
	// EventTopic names each message event after its topic instead
	// ("event: sensors/kitchen/temp"). EventSource hands named events only
	// to listeners added with addEventListener(<topic>), never to
	// onmessage. A topic that cannot be an event name (one containing CR
	// or LF, or "gap") keeps EventName.
	EventTopic bool `yaml:"event_topic"`
	// WriteTimeout bounds writing one batch of events; default 10s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxFilters bounds the topic filters of one stream; default 32.
	MaxFilters int `yaml:"max_filters"`
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
