package browser

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"
)

// consoleWidths are the window widths every console page is checked at: a
// laptop's 1280×800 and a narrow phone-like 400 px.
var consoleWidths = []struct {
	name string
	w, h int64
}{{"1280", 1280, 800}, {"400", 400, 800}}

// consoleUI drives the admin console in one browser tab.
type consoleUI struct {
	t    *testing.T
	ctx  context.Context
	base string // the admin listener, http://host:port
	// shots is where the screenshots go: $HERALD_CONSOLE_SCREENSHOTS, or a
	// directory of the test's.
	shots string

	mu       sync.Mutex
	urls     []string // every URL the tab requested
	problems []string // script exceptions and CSP reports
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](u *consoleUI, expr string) T {
	u.t.Helper()
	v, err := chromedp.Run(u.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		u.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// wait waits until a JavaScript expression is truthy.
func (u *consoleUI) wait(what, expr string) {
	u.t.Helper()
	if _, err := chromedp.Run(u.ctx, chromedp.Poll[bool]("!!("+expr+")",
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		page, _ := chromedp.Run(u.ctx, chromedp.Evaluate[string](`document.getElementById('main').innerText`))
		toast, _ := chromedp.Run(u.ctx, chromedp.Evaluate[string](`document.getElementById('toast').innerText`))
		u.t.Fatalf("%s: %s not true within 20 s: %v\npage:\n%s\ntoast: %s\nproblems: %q", what, expr, err, page, toast, u.problems)
	}
}

// do runs a JavaScript statement list in the page.
func (u *consoleUI) do(stmts string) {
	u.t.Helper()
	eval[bool](u, "(() => { "+stmts+"; return true })()")
}

// fill sets the value of the element sel and tells the page it changed.
func (u *consoleUI) fill(sel, value string) {
	u.t.Helper()
	u.do(fmt.Sprintf(`const el = document.querySelector(%s); if (!el) throw new Error('no ' + %[1]s); el.value = %s; el.dispatchEvent(new Event('input', {bubbles: true}))`, js(sel), js(value)))
}

// submit submits the form sel as its submit button would.
func (u *consoleUI) submit(sel string) {
	u.t.Helper()
	u.do(fmt.Sprintf(`document.querySelector(%s).requestSubmit()`, js(sel)))
}

// rowHas is an expression: a row of the page's tables holds all of texts.
func rowHas(texts ...string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#page tbody tr')].some(r => %s.every(x => r.textContent.includes(x)))`, js(texts))
}

// press clicks the button labelled label in the table row holding text;
// a button asking for confirmation ("Really …?") is clicked again.
func (u *consoleUI) press(text, label string) {
	u.t.Helper()
	click := fmt.Sprintf(`(() => {
	  const r = [...document.querySelectorAll('#page tbody tr')].find(r => r.textContent.includes(%s));
	  const b = r && [...r.querySelectorAll('button')].find(b => b.textContent === %s || b.textContent.startsWith('Really '));
	  if (!b) return '';
	  const was = b.textContent;
	  b.click();
	  return was;
	})()`, js(text), js(label))
	if got := eval[string](u, click); got != label {
		u.t.Fatalf("no %q button in a row holding %q (found %q)", label, text, got)
	}
	// A confirming button now asks "Really …?": confirm.
	if eval[bool](u, `[...document.querySelectorAll('#page tbody tr button')].some(b => b.textContent.startsWith('Really '))`) {
		if got := eval[string](u, click); !strings.HasPrefix(got, "Really ") {
			u.t.Fatalf("confirming %q in the row holding %q: pressed %q", label, text, got)
		}
	}
}

// open shows a page of the console and waits until it has drawn.
func (u *consoleUI) open(page, ready string) {
	u.t.Helper()
	u.do(fmt.Sprintf(`location.hash = %s`, js(page)))
	u.wait("page "+page, fmt.Sprintf(`(() => { const p = document.getElementById('page'); return p && p.dataset.page === %s && (%s) })()`, js(page), ready))
}

// check screenshots the page at each width, after checking that nothing
// overflows it horizontally there, and goes back to the first width.
func (u *consoleUI) check(name string) {
	u.t.Helper()
	for _, w := range consoleWidths {
		if err := chromedp.Do(u.ctx, chromedp.EmulateViewport(w.w, w.h)); err != nil {
			u.t.Fatal(err)
		}
		// Two frames: the layout of the new width is done.
		if _, err := chromedp.Run(u.ctx, chromedp.Evaluate[bool](`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`, chromedp.EvalAwaitPromise)); err != nil {
			u.t.Fatal(err)
		}
		over := eval[[]string](u, `(() => {
		  const vw = document.documentElement.clientWidth;
		  const out = [];
		  if (document.documentElement.scrollWidth > vw) out.push('document ' + document.documentElement.scrollWidth + ' > ' + vw);
		  for (const el of document.querySelectorAll('body *')) {
		    if (el.closest('.scroll') || el.closest('[hidden]') || el.id === 'toast') continue;
		    const r = el.getBoundingClientRect();
		    if (r.width && r.right > vw + 0.5) out.push(el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className + ' right ' + Math.round(r.right));
		  }
		  return out.slice(0, 5);
		})()`)
		if len(over) > 0 {
			u.t.Errorf("%s at %d px overflows horizontally: %q", name, w.w, over)
		}
		img, err := chromedp.Run(u.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			u.t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(img))
		if err != nil || int64(cfg.Width) != w.w || int64(cfg.Height) != w.h {
			u.t.Fatalf("screenshot of %s at %d px: %dx%d %v", name, w.w, cfg.Width, cfg.Height, err)
		}
		path := filepath.Join(u.shots, fmt.Sprintf("console-%s-%s.png", name, w.name))
		if err := os.WriteFile(path, img, 0o644); err != nil {
			u.t.Fatal(err)
		}
	}
	if err := chromedp.Do(u.ctx, chromedp.EmulateViewport(consoleWidths[0].w, consoleWidths[0].h)); err != nil {
		u.t.Fatal(err)
	}
}

// watch records the tab's requests, script exceptions and CSP reports.
func (u *consoleUI) watch() {
	requests := chromedp.Events(u.ctx, network.RequestWillBeSent)
	exceptions := chromedp.Events(u.ctx, runtime.ExceptionThrown)
	entries := chromedp.Events(u.ctx, cdplog.EntryAdded)
	go func() {
		for ev, err := range requests {
			if err != nil {
				return
			}
			if ev.Request != nil {
				u.mu.Lock()
				u.urls = append(u.urls, ev.Request.URL)
				u.mu.Unlock()
			}
		}
	}()
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			u.mu.Lock()
			text := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				text += " " + ev.ExceptionDetails.Exception.Description
			}
			u.problems = append(u.problems, "exception: "+text)
			u.mu.Unlock()
		}
	}()
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			if ev.Entry != nil && strings.Contains(ev.Entry.Text, "Content Security Policy") {
				u.mu.Lock()
				u.problems = append(u.problems, "CSP: "+ev.Entry.Text)
				u.mu.Unlock()
			}
		}
	}()
	if _, err := chromedp.Call(u.ctx, network.Enable, network.EnableParams{}); err != nil {
		u.t.Fatal(err)
	}
	if _, err := chromedp.Call(u.ctx, runtime.Enable, cdp.Empty{}); err != nil {
		u.t.Fatal(err)
	}
	if _, err := chromedp.Call(u.ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		u.t.Fatal(err)
	}
}

// login logs in with key and waits for the header to name who it is.
func (u *consoleUI) login(key, who string) {
	u.t.Helper()
	u.fill("#key", key)
	u.submit("#login")
	u.wait("login", fmt.Sprintf(`!document.getElementById('top').hidden && document.getElementById('who').textContent === %s`, js(who)))
}

// adminREST calls the admin API with the operator token.
func adminREST(t *testing.T, base, token, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+path, r)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// mqttClient is a Paho MQTT 5 client and what the server sent it.
type mqttClient struct {
	*paho.Client
	msgs   chan *paho.Publish
	closed chan struct{} // closed on the server's DISCONNECT or a connection error
	once   sync.Once
}

// connectMQTT connects Paho with the token as the password: the client,
// or the CONNACK's reason code when refused.
func connectMQTT(t *testing.T, addr string, cp *paho.Connect, token string) (*mqttClient, byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &mqttClient{msgs: make(chan *paho.Publish, 1024), closed: make(chan struct{})}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case c.msgs <- pr.Packet:
			default:
			}
			return true, nil
		}},
		OnServerDisconnect: func(*paho.Disconnect) { c.once.Do(func() { close(c.closed) }) },
		OnClientError:      func(error) { c.once.Do(func() { close(c.closed) }) },
	})
	cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = "console-test", true, []byte(token), true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		if ca == nil {
			t.Fatalf("connect %s: %v", cp.ClientID, err)
		}
		return nil, ca.ReasonCode
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, 0
}

// TestAdminConsoleDevelopmentMode ensures the console of make run's
// development mode (the admin API answering without a credential) logs in
// with an empty key, as docs/admin-console.md says, and shows its dev
// tenant.
func TestAdminConsoleDevelopmentMode(t *testing.T) {
	h := runEmbedded(t)
	u := &consoleUI{t: t, ctx: startBrowser(t), base: h.Admin, shots: t.TempDir()}
	if err := chromedp.Do(u.ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(h.Admin+"/console/")); err != nil {
		t.Fatal(err)
	}
	u.wait("login form", `document.getElementById('login') && document.getElementById('top').hidden`)
	u.login("", "operator")
	u.open("tenants", rowHas("dev"))
}

// TestAdminConsole ensures the admin web console of bin/herald (as make run
// starts it, here with credentials required) works in headless Chromium
// on the REST API alone: nothing but a login form (and no API call)
// without a key, and a wrong key refused; the operator creates a tenant,
// edits its limits, deletes another with confirmation, creates an API key
// whose token it shows once and edits its capabilities; a Paho client connecting with that key shows on the
// connections page with its protocol, address and subscription; the usage
// page charts its messages; a message published from the topics page
// reaches the client and the topic viewer (one of HTML shown as text), and
// its retained copy shows and
// is deleted on the retained page; a persistent session and JWT and mTLS
// credentials show on theirs; kicking the client disconnects it; revoking
// the key makes the edge refuse it; a tenant-scoped admin sees only its
// tenant. Every page is screenshot at 1280×800 and 400 px wide, without
// horizontal overflow; no script error or CSP violation occurs; no URL the
// tab requests holds a key.
func TestAdminConsole(t *testing.T) {
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	op := "op-" + hex.EncodeToString(secret)
	h := runEmbedded(t, "HERALD_ADMIN_TOKEN="+op, "HERALD_ANONYMOUS_TENANT=")
	shots := os.Getenv("HERALD_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	u := &consoleUI{t: t, ctx: startBrowser(t), base: h.Admin, shots: shots}
	u.watch()
	if err := chromedp.Do(u.ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(h.Admin+"/console/")); err != nil {
		t.Fatal(err)
	}

	// Without a key: the login form alone.
	u.wait("login form", `document.getElementById('login') && document.getElementById('top').hidden`)
	if n := eval[int](u, `document.querySelectorAll('table, #page').length`); n != 0 {
		t.Fatalf("before login the console shows %d tables or pages", n)
	}
	u.check("login")
	u.mu.Lock()
	for _, url := range u.urls {
		if strings.Contains(url, "/v1/") {
			t.Errorf("before login the console called the API: %s", url)
		}
	}
	u.mu.Unlock()
	u.fill("#key", "not-the-key")
	u.submit("#login")
	u.wait("a wrong key refused", `document.getElementById('login-error').textContent.includes('not accepted') && sessionStorage.length === 0`)

	// The operator: tenants.
	u.login(op, "operator")
	u.open("tenants", `document.getElementById('create-tenant')`)
	u.fill("#create-tenant input[name=id]", "acme")
	u.fill("#create-tenant input[name=displayName]", "Acme Corp")
	u.submit("#create-tenant")
	u.wait("tenant acme", rowHas("acme", "Acme Corp")+` && document.getElementById('tenant').value === 'acme'`)
	u.press("acme", "Edit")
	u.wait("the limits form", `document.getElementById('edit-tenant')`)
	u.fill("#edit-tenant input[name=maxConnections]", "50")
	u.fill("#edit-tenant input[name=maxPayloadBytes]", "65536")
	u.submit("#edit-tenant")
	u.wait("limits shown", rowHas("acme", "connections 50", "payload bytes 65536"))
	if code, tn := adminREST(t, h.Admin, op, "GET", "/v1/tenants/acme", nil); code != 200 ||
		tn["limits"].(map[string]any)["maxConnections"] != "50" || tn["limits"].(map[string]any)["maxPayloadBytes"] != "65536" {
		t.Fatalf("acme after the edit: %d %v, want maxConnections 50 and maxPayloadBytes 65536", code, tn)
	}
	u.fill("#create-tenant input[name=id]", "scratch")
	u.fill("#create-tenant input[name=displayName]", "")
	u.submit("#create-tenant")
	u.wait("tenant scratch", rowHas("scratch"))
	u.press("scratch", "Delete")
	u.wait("scratch gone", `!(`+rowHas("scratch")+`) && `+rowHas("acme"))
	if code, _ := adminREST(t, h.Admin, op, "GET", "/v1/tenants/scratch", nil); code != http.StatusNotFound {
		t.Fatalf("scratch after its deletion: %d, want 404", code)
	}
	u.do(`const s = document.getElementById('tenant'); s.value = 'acme'; s.dispatchEvent(new Event('change'))`)
	u.open("tenants", rowHas("acme"))
	u.check("tenants")

	// An API key, its token shown once.
	u.open("keys", `document.getElementById('create-key')`)
	u.fill("#create-key input[name=description]", "console test device")
	u.fill("#create-key textarea[name=capabilities]", "publish,subscribe:demo/#")
	u.submit("#create-key")
	u.wait("the new token", `(document.getElementById('new-token') || {}).textContent?.startsWith('hk_') && `+rowHas("console test device", "publish,subscribe:demo/#"))
	token := eval[string](u, `document.getElementById('new-token').textContent`)
	u.check("keys")
	// Its capabilities edited: the row and the API say so.
	u.press("console test device", "Edit")
	u.fill("#page .caps-edit textarea", "publish,subscribe:demo/#\nsubscribe:alerts/+")
	u.submit("#page .caps-edit")
	u.wait("capabilities edited", rowHas("console test device", "publish,subscribe:demo/#", "subscribe:alerts/+"))

	// A client with that key shows on the connections page.
	c, code := connectMQTT(t, h.MQTT, &paho.Connect{ClientID: "console-device", CleanStart: true, KeepAlive: 30}, token)
	if c == nil {
		t.Fatalf("connect with the console's key: CONNACK %#x", code)
	}
	sub, err := c.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "demo/#", QoS: 1}}})
	if err != nil || sub.Reasons[0] > 2 {
		t.Fatalf("subscribe demo/#: %v %v", sub, err)
	}
	u.open("connections", rowHas("console-device", "mqtt", "demo/#", "127.0.0.1:"))
	u.check("connections")

	// Usage: the page's samples chart the client's messages.
	u.open("usage", `document.querySelectorAll('#charts figure').length === 3`)
	for i := range 20 {
		pr, err := c.Publish(t.Context(), &paho.Publish{Topic: "demo/load", QoS: 1, Payload: []byte(fmt.Sprintf("reading %02d", i))})
		if err != nil || pr.ReasonCode != 0 {
			t.Fatalf("publish %d: %v %v", i, pr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	u.wait("charted rates", `(() => {
	  const v = [...document.querySelectorAll('#charts .peak')].map(e => e.textContent);
	  // Two rate samples at least: a line, not a point.
	  const some = (p, zero) => p.startsWith('peak ') && !p.startsWith(zero) && !p.endsWith(' 1 samples');
	  return v.length === 3 && some(v[0], 'peak 0 ') && some(v[1], 'peak 0B ') && v[2].startsWith('peak 1 ');
	})()`)
	u.check("usage")

	// Publish from the topics page: the client and the viewer get it.
	u.open("topics", `document.getElementById('watch-status').textContent.startsWith('watching #, at ')`)
	u.fill("#pub-topic", "demo/hello")
	u.fill("#pub-payload", "hello from the console")
	u.do(`document.getElementById('pub-retain').checked = true`)
	u.submit("#publish")
	u.wait("published", `document.getElementById('pub-result').textContent.startsWith('stored at ')`)
	u.wait("the viewer shows it", rowHas("demo/hello", "hello from the console"))
	for deadline := time.After(10 * time.Second); ; {
		select {
		case m := <-c.msgs:
			if m.Topic != "demo/hello" {
				continue
			}
			if string(m.Payload) != "hello from the console" {
				t.Fatalf("the client got %q on demo/hello", m.Payload)
			}
		case <-deadline:
			t.Fatal("the client did not get the console's message within 10 s")
		}
		break
	}
	// A payload that is HTML shows as its characters, and runs nothing.
	xss := `<img src=x onerror="window.pwned=1">`
	u.fill("#pub-topic", "demo/xss")
	u.fill("#pub-payload", xss)
	u.do(`document.getElementById('pub-retain').checked = false`)
	u.submit("#publish")
	u.wait("the HTML payload as text", `[...document.querySelectorAll('#messages td')].some(td => td.textContent === `+js(xss)+`)`)
	if eval[bool](u, `window.pwned === 1 || !!document.querySelector('#messages img')`) {
		t.Fatal("a payload was inserted as HTML")
	}
	u.check("topics")

	// Its retained copy, browsed by filter, then deleted.
	u.open("retained", `document.getElementById('retained-filter')`)
	u.fill("#retained-filter", "demo/+")
	u.do(`document.querySelector('#page form').requestSubmit()`)
	u.wait("the retained message", rowHas("demo/hello", "hello from the console"))
	u.check("retained")
	u.press("demo/hello", "Delete")
	u.wait("the retained message deleted", `document.querySelector('#page td.empty')`)

	// A persistent session.
	expiry := uint32(600)
	ps, code := connectMQTT(t, h.MQTT, &paho.Connect{ClientID: "console-persistent", CleanStart: false, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}, token)
	if ps == nil {
		t.Fatalf("persistent client: CONNACK %#x", code)
	}
	if _, err := ps.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "demo/persistent", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	u.open("sessions", rowHas("console-persistent", "demo/persistent"))
	u.check("sessions")
	_ = ps.Disconnect(&paho.Disconnect{})

	// JWT keys and mTLS identities.
	u.open("credentials", `document.getElementById('create-mtls')`)
	u.fill("#create-jwt input", "kid-console")
	u.do(`document.querySelector('#create-jwt select').value = 'HS256'`)
	u.submit("#create-jwt")
	u.wait("the JWT key", rowHas("kid-console", "HS256")+` && document.querySelector('#page .secret code').textContent.length === 64`)
	fp := strings.Repeat("ab", 32)
	u.fill("#create-mtls input", "console device cert")
	u.fill("#create-mtls input[pattern]", fp)
	u.fill("#create-mtls textarea", "publish:devices/1/#")
	u.submit("#create-mtls")
	u.wait("the mTLS identity", rowHas("console device cert", fp, "publish:devices/1/#"))
	u.check("credentials")

	// Kick the client.
	u.open("connections", rowHas("console-device"))
	// Armed, the Kick survives the page's next read of the list.
	read := eval[string](u, `document.getElementById('connections-read').textContent`)
	u.do(`[...document.querySelectorAll('#page tbody tr')].find(r => r.textContent.includes('console-device')).querySelector('button').click()`)
	u.wait("a read of the list", fmt.Sprintf(`document.getElementById('connections-read').textContent !== %s`, js(read)))
	if got := eval[string](u, `document.querySelector('#page tbody tr button').textContent`); got != "Really kick?" {
		t.Fatalf("after a refresh the armed Kick button reads %q", got)
	}
	u.do(`document.querySelector('#page tbody tr button').click()`)
	select {
	case <-c.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the kicked client is still connected after 10 s")
	}
	u.wait("the kicked connection gone", `!(`+rowHas("console-device")+`)`)

	// Revoke the key: its client is refused.
	c2, code := connectMQTT(t, h.MQTT, &paho.Connect{ClientID: "console-device", CleanStart: true, KeepAlive: 30}, token)
	if c2 == nil {
		t.Fatalf("reconnect before the revocation: CONNACK %#x", code)
	}
	u.open("keys", rowHas("console test device"))
	u.press("console test device", "Revoke")
	u.wait("the key gone", `document.querySelector('#page td.empty')`)
	select {
	case <-c2.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked key's client is still connected after 10 s")
	}
	if c3, code := connectMQTT(t, h.MQTT, &paho.Connect{ClientID: "console-device", CleanStart: true, KeepAlive: 30}, token); c3 != nil || code < 0x80 {
		t.Fatalf("connect with the revoked key: admitted (CONNACK %#x), want refused", code)
	}

	// A tenant-scoped admin sees its tenant alone.
	status, out := adminREST(t, h.Admin, op, "POST", "/v1/admin-keys", map[string]any{"tenant": "acme", "description": "acme's admin"})
	scoped, _ := out["token"].(string)
	if status != 200 || scoped == "" {
		t.Fatalf("create a scoped admin key: %d %v", status, out)
	}
	if code, _ := adminREST(t, h.Admin, op, "POST", "/v1/tenants", map[string]any{"id": "other"}); code != 200 {
		t.Fatalf("create tenant other: %d", code)
	}
	u.do(`document.getElementById('logout').click()`)
	u.wait("logged out", `document.getElementById('top').hidden && sessionStorage.length === 0 && !document.getElementById('page')`)
	u.login(scoped, "admin of acme")
	u.open("tenants", rowHas("acme"))
	if opts := eval[[]string](u, `[...document.querySelectorAll('#tenant option')].map(o => o.value)`); len(opts) != 1 || opts[0] != "acme" {
		t.Fatalf("a scoped admin's tenant picker holds %q, want acme alone", opts)
	}
	if eval[bool](u, `!!document.getElementById('create-tenant') || `+rowHas("other")) {
		t.Fatal("a scoped admin sees the operator's tenant form or another tenant")
	}
	u.check("scoped")

	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.problems) > 0 {
		t.Errorf("the console's script errors or CSP reports: %q", u.problems)
	}
	for _, url := range u.urls {
		for _, k := range []string{op, scoped, token} {
			if strings.Contains(url, k) {
				t.Errorf("the tab requested %s, which holds a key", url)
			}
		}
	}
	t.Logf("%d requests; screenshots in %s", len(u.urls), shots)
}
