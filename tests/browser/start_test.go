package browser

import (
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserStart ensures a dashboard in headless Chromium that opens a
// wildcard on the embedded default with a start sees, before anything is
// published again: with retained=true, over EventSource and over the
// WebSocket protocol, the retained value of each matching topic (rows
// "retained"), then the live messages; with rewind=2, the last two
// messages with their positions, then the live ones — none twice.
func TestBrowserStart(t *testing.T) {
	h := runEmbedded(t)
	_, mqttPort, _ := strings.Cut(h.MQTT, ":")
	// The device's readings, retained as a device's state is.
	for _, r := range []struct{ topic, value string }{
		{"sensors/kitchen/temp", "20.9"}, {"sensors/kitchen/temp", "21.5"}, {"sensors/hall/temp", "19.0"},
	} {
		out, err := exec.Command(need(t, "mosquitto_pub"), "-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv5", "-q", "1",
			"-r", "-t", r.topic, "-m", r.value).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
	}
	device(t, mqttPort, "21.6") // not retained: history, not state
	// history is what sensors/# holds, in order: a rewind's expectation.
	history := []received{{Topic: "sensors/kitchen/temp", Payload: "20.9"}, {Topic: "sensors/kitchen/temp", Payload: "21.5"},
		{Topic: "sensors/hall/temp", Payload: "19.0"}, {Topic: "sensors/kitchen/temp", Payload: "21.6"}}
	state := []received{{Topic: "sensors/hall/temp", Payload: "19.0"}, {Topic: "sensors/kitchen/temp", Payload: "21.5"}}
	ctx := startBrowser(t)
	for _, tc := range []struct {
		name, query string
		rewind      int // 0: retained first
	}{
		{"sse retained", "transport=sse&retained=true", 0},
		{"ws retained", "transport=ws&retained=true", 0},
		{"sse rewind", "transport=sse&rewind=2", 2},
		{"ws rewind", "transport=ws&rewind=3", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// What the page shows before the live messages: the retained
			// values by topic (the live ones were not retained), or the
			// last messages.
			first := state
			if tc.rewind > 0 {
				first = history[len(history)-tc.rewind:]
			}
			if err := chromedp.Do(ctx, chromedp.Navigate(h.HTTP+"/?topic="+url.QueryEscape("sensors/#")+"&"+tc.query)); err != nil {
				t.Fatal(err)
			}
			waitPage(t, ctx, `window.herald.state === "open"`, 15*time.Second)
			waitPage(t, ctx, fmt.Sprintf(`window.received.length >= %d`, len(first)), 15*time.Second)
			retained := tc.rewind == 0
			check := func(got []received, want []received) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("the page received %+v, want %+v", got, want)
				}
				for i, w := range want {
					g := got[i]
					if g.Topic != w.Topic || g.Payload != w.Payload {
						t.Fatalf("message %d is %+v, want %s %s (all: %+v)", i, g, w.Topic, w.Payload, got)
					}
					if retained && i < len(first) && g.ID != "" {
						t.Fatalf("retained message %d has position %q, want none", i, g.ID)
					}
					if (!retained || i >= len(first)) && g.ID == "" {
						t.Fatalf("message %d %+v has no position", i, g)
					}
				}
			}
			got, err := chromedp.Run(ctx, chromedp.Evaluate[[]received](`window.received`))
			if err != nil {
				t.Fatal(err)
			}
			check(got, first)
			// Two live messages: a duplicate of the start, or of the first,
			// would come before the second.
			device(t, mqttPort, "live "+tc.name, "end "+tc.name)
			waitPage(t, ctx, fmt.Sprintf(`window.received.some(m => m.payload === %q)`, "end "+tc.name), 15*time.Second)
			got, err = chromedp.Run(ctx, chromedp.Evaluate[[]received](`window.received`))
			if err != nil {
				t.Fatal(err)
			}
			live := []received{{Topic: "sensors/kitchen/temp", Payload: "live " + tc.name},
				{Topic: "sensors/kitchen/temp", Payload: "end " + tc.name}}
			check(got, append(slices.Clone(first), live...))
			history = append(history, live...)
		})
	}
}
