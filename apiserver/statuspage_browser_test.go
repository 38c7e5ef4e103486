package apiserver

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ars-project/ars/fsm"
)

// chromium is the headless browser the status page is tested in (Debian's
// chromium package, installed by make lab-deps). The test skips without
// it, unless ARS_REQUIRE_LAB says the lab's packages must be there.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("ARS_REQUIRE_LAB") != "" {
		t.Fatal("ARS_REQUIRE_LAB is set but chromium is not installed (make lab-deps)")
	}
	t.Skip("chromium is not installed (make lab-deps)")
	return ""
}

// The status page in a real browser, the size of a phone's screen: it
// loads with the reader's Basic credentials, follows the event stream,
// shows a switch committed while it is open (the new serving replica and
// the switch's event) without being loaded again, fits the screen's width,
// and shows no secret.
func TestStatusPageInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	exe := chromium(t)
	b := newFakeBackend("n1", true)
	ctx := context.Background()
	if _, err := b.Apply(ctx, encodedApply(t, "dns")); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, "n1", b, nil)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // root in CI
		// The test cluster's CA is not the browser's; what is tested is
		// the page, not the certificate.
		chromedp.IgnoreCertErrors,
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("viewer:"+secretReader))
	auth := func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders,
			network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": basic}})
		return chromedp.Void{}, err
	}
	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('`+id+`').textContent`))
		if err != nil {
			t.Fatalf("reading #%s: %v", id, err)
		}
		return s
	}
	waitFor := func(what, predicate string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](predicate, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("%s: %v (the page says %q)", what, err, text("live"))
		}
	}
	// The browser starts on the first action, on a context without a
	// deadline (a deadline would end the browser); the test's own end
	// stops it.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), auth,
		chromedp.Navigate(ts.URL+"/")); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	waitFor("the page follows the event stream", `document.getElementById('live').textContent.startsWith('Live:')`)
	svc, _ := b.Service("dns")
	from, ok := svc.Active()
	if services := text("services"); !ok || !strings.Contains(services, "Serving: "+from.Name) {
		t.Fatalf("the page shows services %q; want %s serving", services, from.Name)
	}

	// A switch committed while the page is open.
	cmd, err := fsm.Encode(3, fsm.Switch{Service: "dns", From: from.Name, Reason: fsm.ReasonDoS, At: time.Now().UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Apply(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	svc, _ = b.Service("dns")
	to, _ := svc.Active()
	if to.Name == from.Name {
		t.Fatalf("the switch left %s active", from.Name)
	}
	waitFor("the page shows "+to.Name+" serving after the switch",
		`document.getElementById('services').textContent.includes('Serving: `+to.Name+`')`)
	first, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('#event-rows tr').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprint(res.Index), "switch", from.Name + " -> the standby (dos"} {
		if !strings.Contains(first, want) {
			t.Errorf("newest event row %q lacks %q", first, want)
		}
	}

	html, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Errorf("the page is wider than a 390 px screen")
	}
	for _, secret := range []string{secretReader, secretOperator, secretDetector, basic} {
		if strings.Contains(html, secret) {
			t.Errorf("the page shows a secret (%.6s…)", secret)
		}
	}
}
