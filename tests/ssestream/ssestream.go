// Package ssestream reads Herald's SSE streams as a browser's EventSource
// does, for the end-to-end tests that judge a client by "every message, and
// exactly the stream": each event's stream sequence and payload, the last
// event id to resume from, and the server's retry: delay.
package ssestream

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event is one message event: its sequence in the tenant's stream and its
// payload.
type Event struct {
	Seq     uint64
	Payload string
}

// Read consumes one stream until it ends. It calls add for each message
// event and fail for data it cannot decode or a gap event, and returns the
// last event id seen (lastID if none) and the retry delay in force.
func Read(body io.Reader, lastID string, retry time.Duration, add func(Event), fail func(error)) (string, time.Duration) {
	br := bufio.NewReader(body)
	var id, data string
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data != "" {
				var m struct {
					Payload string `json:"payload"`
					Seq     uint64 `json:"seq"`
				}
				if jerr := json.Unmarshal([]byte(data), &m); jerr != nil {
					fail(fmt.Errorf("bad event data %q: %w", data, jerr))
				} else {
					add(Event{Seq: m.Seq, Payload: m.Payload})
				}
				if id != "" {
					lastID = id
				}
			}
			id, data = "", ""
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case strings.HasPrefix(line, "event: gap"):
			fail(fmt.Errorf("gap event after %s", lastID))
		case strings.HasPrefix(line, "retry: "):
			if ms, perr := strconv.Atoi(strings.TrimPrefix(line, "retry: ")); perr == nil {
				retry = time.Duration(ms) * time.Millisecond
			}
		}
		if err != nil {
			return lastID, retry
		}
	}
}

// Exact returns how many payloads of sent events lacks; when none, it
// requires the stream exactly: each event's sequence one above the one
// before (the stream holding only the test's messages), so that nothing was
// skipped or repeated across reconnections.
func Exact(events []Event, sent []string) (missing int, err error) {
	seen := make(map[string]bool, len(events))
	for _, e := range events {
		seen[e.Payload] = true
	}
	for _, p := range sent {
		if !seen[p] {
			missing++
		}
	}
	if missing > 0 {
		return missing, nil
	}
	for i := 1; i < len(events); i++ {
		if events[i].Seq != events[i-1].Seq+1 {
			return 0, fmt.Errorf("event %d has seq %d after %d: not the stream, exactly, in order", i, events[i].Seq, events[i-1].Seq)
		}
	}
	return 0, nil
}

// Log collects what one client read over all its streams; Add and Fail are
// Read's callbacks. Its zero value is ready; it is safe for concurrent use.
type Log struct {
	mu     sync.Mutex
	events []Event
	err    error
}

// Add records an event.
func (l *Log) Add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// Fail records the first error.
func (l *Log) Fail(err error) {
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
}

// Wait waits up to within for the log to hold every payload of sent, then
// requires exactly the stream (Exact); it returns the first error the
// reading met, or how many payloads are still missing at the end.
func (l *Log) Wait(ctx context.Context, sent []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		l.mu.Lock()
		events := slices.Clone(l.events)
		err := l.err
		l.mu.Unlock()
		if err != nil {
			return err
		}
		missing, err := Exact(events, sent)
		if err != nil || missing == 0 {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d of %d messages missing", missing, len(sent))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
