package browser

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/heraldmq/herald/tests/localcluster"
)

// device publishes readings as docs/getting-started.md's device does: one
// mosquitto_pub per reading, MQTT 5, QoS 1.
func device(t *testing.T, mqttPort string, readings ...string) {
	t.Helper()
	pub := need(t, "mosquitto_pub")
	for _, r := range readings {
		out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv5", "-q", "1",
			"-t", "sensors/kitchen/temp", "-m", r).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
	}
}

// subscriber starts mosquitto_sub with args (which must hold -d), waits
// until it has subscribed, and returns a function that waits for it to end
// and returns what it printed.
func subscriber(t *testing.T, args ...string) func() string {
	t.Helper()
	// Line-buffered: a pipe would hold its lines until it exits.
	cmd := exec.Command(need(t, "stdbuf"), append([]string{"-oL", need(t, "mosquitto_sub")}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var printed strings.Builder
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		printed.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "received SUBACK") {
			break
		}
	}
	if !strings.Contains(printed.String(), "received SUBACK") {
		t.Fatalf("mosquitto_sub never subscribed:\n%s", printed.String())
	}
	return func() string {
		done := make(chan struct{})
		go func() {
			for lines.Scan() {
				printed.WriteString(lines.Text() + "\n")
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cmd.Wait()
		return printed.String()
	}
}

// pageRows is the page's table, newest first, as [position, topic, payload].
func pageRows(t *testing.T, ctx context.Context) [][]string {
	t.Helper()
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](
		`[...document.querySelectorAll('#log tr')].map(tr => [...tr.children].map(td => td.textContent))`))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestGettingStartedPages ensures the example page shows what
// docs/getting-started.md says a newcomer sees: subscribed ("open") to the
// filter of its URL, then each reading of an MQTT device as a row
// (position, topic, payload; newest first), the answer to its own publish
// ("stored at <position>") and that message too; and, on edge B of the
// local cluster, what the device published on edge A. With
// HERALD_SCREENSHOTS=1 it writes the document's screenshots of those pages
// (docs/images/getting-started-*.png); without, it checks that the
// document shows them and that they exist.
func TestGettingStartedPages(t *testing.T) {
	root := localcluster.RepoRoot()
	doc, err := os.ReadFile(filepath.Join(root, "docs", "getting-started.md"))
	if err != nil {
		t.Fatal(err)
	}
	shots := []string{"getting-started-open.png", "getting-started-device.png", "getting-started-edge-b.png"}
	update := os.Getenv("HERALD_SCREENSHOTS") == "1"
	for _, s := range shots {
		if !strings.Contains(string(doc), "(images/"+s+")") {
			t.Fatalf("docs/getting-started.md does not show images/%s", s)
		}
		if _, err := os.Stat(filepath.Join(root, "docs", "images", s)); err != nil && !update {
			t.Fatalf("%v (HERALD_SCREENSHOTS=1 makes it)", err)
		}
	}
	shot := func(ctx context.Context, name string) {
		if !update {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "docs", "images", name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/images/%s (%d bytes)", name, len(png))
	}
	position := regexp.MustCompile(`^[0-9a-z]+-[0-9]+$`)

	// Steps 2 and 3: make run's herald, the page subscribed to everything.
	h := runHerald(t)
	httpBase := h.HTTP
	_, mqttPort, _ := strings.Cut(h.MQTT, ":")
	ctx := startBrowser(t)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1000, 430), chromedp.Navigate(httpBase+"/?topic=%23")); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, `window.herald.state === "open"`, 15*time.Second)
	if s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("status"))); s != "open" {
		t.Fatalf("the page's status says %q, want open", s)
	}
	shot(ctx, shots[0])

	readings := []string{"21.5", "21.7", "22.0", "22.4", "22.1"}
	device(t, mqttPort, readings...)
	waitPage(t, ctx, fmt.Sprintf(`window.received.length === %d`, len(readings)), 15*time.Second)
	// The document's subscriber, with -d to tell when it has subscribed.
	sub := subscriber(t, "-h", "127.0.0.1", "-p", mqttPort, "-V", "mqttv5", "-t", "demo/#", "-v", "-C", "1", "-W", "60", "-d")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#publish button`))); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, `document.getElementById('presult').textContent.startsWith('stored at ')`, 15*time.Second)
	if out := sub(); !strings.Contains(out, "\ndemo/hello hello from the browser\n") {
		t.Fatalf("the subscriber printed:\n%s\nwant demo/hello hello from the browser", out)
	}
	waitPage(t, ctx, fmt.Sprintf(`window.received.length === %d`, len(readings)+1), 15*time.Second)
	rows := pageRows(t, ctx)
	if len(rows) != len(readings)+1 || rows[0][1] != "demo/hello" || rows[0][2] != "hello from the browser" {
		t.Fatalf("the page's rows are %q, want the browser's message on top of the %d readings", rows, len(readings))
	}
	for i, r := range readings {
		row := rows[len(readings)-i]
		if !position.MatchString(row[0]) || row[1] != "sensors/kitchen/temp" || row[2] != r {
			t.Fatalf("row of reading %d is %q, want [<position> sensors/kitchen/temp %s]", i+1, row, r)
		}
	}
	shot(ctx, shots[1])

	// Step 4: the local cluster; the page on edge B, the device on edge A.
	c := startCluster(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(c.B.HTTP+"/?topic=%23")); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, `window.herald.state === "open"`, 15*time.Second)
	_, aPort, _ := strings.Cut(c.A.MQTT, ":")
	device(t, aPort, readings[:3]...)
	waitPage(t, ctx, `window.received.length === 3`, 15*time.Second)
	rows = pageRows(t, ctx)
	for i, r := range readings[:3] {
		if row := rows[2-i]; row[1] != "sensors/kitchen/temp" || row[2] != r {
			t.Fatalf("edge B's page rows are %q, want the device's readings on edge A", rows)
		}
	}
	shot(ctx, shots[2])
}
