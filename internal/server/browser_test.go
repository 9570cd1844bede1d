package server

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fashion-classifier/fashion/internal/fetch"
)

// chromiumPath is where Debian's chromium package installs the browser.
const chromiumPath = "/usr/bin/chromium"

// productPhoto draws a dark T-shirt on a light background, like a shop
// photo, so the page shows the dataset conversion at work.
func productPhoto(t *testing.T) []byte {
	t.Helper()
	const w, h = 240, 200
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	bg := color.RGBA{R: 236, G: 238, B: 242, A: 255}
	shirt := color.RGBA{R: 40, G: 60, B: 120, A: 255}
	for y := range h {
		for x := range w {
			img.Set(x, y, bg)
			body := x >= 80 && x < 160 && y >= 40 && y < 180
			sleeves := y >= 40 && y < 90 && x >= 40 && x < 200 && (y-40) < 50-(abs(x-120)-40)/2
			neck := (x-120)*(x-120)+(y-40)*(y-40) < 300
			if (body || sleeves) && !neck {
				img.Set(x, y, shirt)
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// TestPageInBrowser opens the web page in headless Chromium, uploads an
// image through the file input, waits for the prediction and checks the
// label shown is the one the API gives for the same image. It saves a
// screenshot (PNG, in FASHION_SCREENSHOT_DIR if set, else the test's temp dir).
func TestPageInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("headless browser test needs %s (Debian package chromium): %v", chromiumPath, err)
		}
		t.Skipf("skipping: %s not found (apt-get install chromium); CI=true makes this a failure", chromiumPath)
	}
	if testing.Short() {
		t.Skip("skipping the browser test in -short mode")
	}
	// The page's URL form goes through the fetch policy; allow the loopback
	// image server below.
	ts := startServer(t, Config{Fetch: fetch.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}, newFake())
	dir := t.TempDir()
	photo := productPhoto(t)
	photoPath := filepath.Join(dir, "shirt.png")
	if err := os.WriteFile(photoPath, photo, 0o644); err != nil {
		t.Fatal(err)
	}
	api := decode[Result](t, do(t, "POST", ts.url+"/v1/classify", "image/png", photo))

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.WindowSize(1100, 760),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	err := chromedp.Do(ctx,
		chromedp.Navigate(ts.url+"/"),
		chromedp.WaitVisible(chromedp.ID("drop")),
		chromedp.WaitVisible(`//span[@id="model" and contains(text(), "fake")]`),
		chromedp.SetUploadFiles(chromedp.ID("file"), []string{photoPath}),
		chromedp.WaitVisible(chromedp.CSS(`#out[data-state="done"]`)),
	)
	if err != nil {
		t.Fatalf("driving the page: %v", err)
	}
	label, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("label")))
	if err != nil {
		t.Fatal(err)
	}
	if label != api.Label {
		t.Errorf("page shows label %q, the API answers %q", label, api.Label)
	}
	confidence, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("confidence")))
	if err != nil || confidence == "" {
		t.Errorf("page shows no confidence (%v)", err)
	}
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#bars li").length`))
	if err != nil || bars != 10 {
		t.Errorf("page shows %d probability bars (%v), want 10", bars, err)
	}
	src, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("input28"), "src"))
	if err != nil || !strings.HasPrefix(src.Value, "data:image/png;base64,") {
		t.Errorf("the model-input image is %.40q (%v), want a PNG data URL", src.Value, err)
	}
	if err := chromedp.Do(ctx, chromedp.Sleep(500*time.Millisecond)); err != nil { // let the bars animate
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}

	// The URL form: a dataset-like image from a loopback server.
	dark, _ := testImage(t, 0)
	imgs := newImageServer(t, dark)
	viaURL := decode[Result](t, do(t, "POST", ts.url+"/v1/classify", "application/json",
		[]byte(`{"url":"`+imgs.URL+`/shirt.png"}`)))
	if viaURL.Label == api.Label {
		t.Fatal("test images must get different labels so the page visibly changes")
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("url"), imgs.URL+"/shirt.png"),
		chromedp.Click(chromedp.ID("go")),
		chromedp.WaitVisible(chromedp.CSS(`#out[data-state="done"] #bars li.top[data-class-id="`+strconv.Itoa(viaURL.ClassID)+`"]`)),
	)
	if err != nil {
		t.Fatalf("classifying by URL on the page: %v", err)
	}
	if label, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("label"))); err != nil || label != viaURL.Label {
		t.Errorf("after the URL form the page shows %q (%v), the API answers %q", label, err, viaURL.Label)
	}

	out := dir
	if d := os.Getenv("FASHION_SCREENSHOT_DIR"); d != "" {
		out = d
	}
	path := filepath.Join(out, "page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (label %q, %s)", path, label, confidence)
}
