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

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/fetch"
	"github.com/fashion-classifier/fashion/internal/idx"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/predictor"
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

// pageState is what the page shows, read in one go from the DOM.
type pageState struct {
	State      string `json:"state"`   // #out data-state: busy, done, error
	Verdict    string `json:"verdict"` // #out data-verdict: ok, ood, or "" with no answer
	Label      string `json:"label"`
	Confidence string `json:"confidence"`
	Answered   string `json:"answered"` // which model answered
	Error      string `json:"error"`    // the visible error text, "" when hidden
	HasImage   bool   `json:"hasImage"`
	Original   string `json:"original"` // src of the shown image
	Loaded     bool   `json:"loaded"`   // the shown image decoded (naturalWidth > 0)
	Input28    string `json:"input28"`
	Top        string `json:"top"`     // data-class-id of the highlighted bar, "" for none
	NonZero    int    `json:"nonZero"` // bars showing a non-zero percentage
	Bars       int    `json:"bars"`
}

const readPage = `(() => {
  const $ = (id) => document.getElementById(id);
  const out = $("out"), err = $("error"), orig = $("original"), top = document.querySelector("#bars li.top");
  return {
    state: out.dataset.state || "", verdict: out.dataset.verdict || "",
    label: $("label").textContent, confidence: $("confidence").textContent, answered: $("answered").textContent,
    error: getComputedStyle(err).display === "none" ? "" : err.textContent,
    hasImage: $("drop").classList.contains("has-image") && getComputedStyle(orig).display !== "none",
    original: orig.getAttribute("src") || "", loaded: orig.complete && orig.naturalWidth > 0,
    input28: $("input28").getAttribute("src"),
    top: top ? top.dataset.classId : "",
    nonZero: [...document.querySelectorAll("#bars .pct")].filter((e) => e.textContent !== "0.0%").length,
    bars: document.querySelectorAll("#bars li").length,
  };
})()`

// newBrowser starts headless Chromium for one test, or skips (fails on CI)
// when it is not installed.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("headless browser test needs %s (Debian package chromium): %v", chromiumPath, err)
		}
		t.Skipf("skipping: %s not found (apt-get install chromium); CI=true makes this a failure", chromiumPath)
	}
	if testing.Short() {
		t.Skip("skipping the browser test in -short mode")
	}
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
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(1100, 760),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancelCtx)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitState waits until the page has finished a request (state done or
// error) and returns what it shows.
func waitState(t *testing.T, ctx context.Context, step string) pageState {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#out[data-state="done"], #out[data-state="error"]`))); err != nil {
		t.Fatalf("%s: the page never finished: %v", step, err)
	}
	st, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](readPage))
	if err != nil {
		t.Fatalf("%s: reading the page: %v", step, err)
	}
	return st
}

// resetState marks the page as not finished, so the next waitState waits
// for the next answer rather than reading the previous one.
func resetState(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("out").dataset.state = "test-wait"`)); err != nil {
		t.Fatal(err)
	}
}

// noResult checks the page shows no answer at all: what an error must
// leave, so a previous result never stands beside it.
func noResult(t *testing.T, step string, st pageState, stale string) {
	t.Helper()
	if st.State != "error" || st.Error == "" {
		t.Errorf("%s: state %q, error %q; want a visible error", step, st.State, st.Error)
	}
	if st.Label == stale || strings.Contains(st.Confidence, "%") || st.Top != "" || st.NonZero != 0 || strings.HasPrefix(st.Input28, "data:image/png") || st.Verdict != "" {
		t.Errorf("%s: stale result shown beside the error: %+v", step, st)
	}
}

// TestPageInBrowser drives the web page in headless Chromium through what
// a user does: upload a photo (the label must be the API's), pick a file
// that is not an image (an error, no broken image, no stale result), paste
// a URL that fails (the same) and one that works (the image behind it is
// shown with the answer). It saves a screenshot (PNG, in
// FASHION_SCREENSHOT_DIR if set, else the test's temp dir).
func TestPageInBrowser(t *testing.T) {
	ctx := newBrowser(t)
	// The page's URL form goes through the fetch policy; allow the loopback
	// image server below.
	ts := startServer(t, Config{Fetch: fetch.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}, newFake())
	dir := t.TempDir()
	photo := productPhoto(t)
	photoPath := filepath.Join(dir, "shirt.png")
	if err := os.WriteFile(photoPath, photo, 0o644); err != nil {
		t.Fatal(err)
	}
	notImage := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notImage, []byte("shopping list: socks"), 0o644); err != nil {
		t.Fatal(err)
	}
	api := decode[Result](t, do(t, "POST", ts.url+"/v1/classify", "image/png", photo))

	// 1. Upload.
	err := chromedp.Do(ctx,
		chromedp.Navigate(ts.url+"/"),
		chromedp.WaitVisible(chromedp.ID("drop")),
		chromedp.WaitVisible(`//span[@id="model" and contains(text(), "fake")]`),
		chromedp.SetUploadFiles(chromedp.ID("file"), []string{photoPath}),
	)
	if err != nil {
		t.Fatalf("driving the page: %v", err)
	}
	st := waitState(t, ctx, "upload")
	if st.State != "done" || st.Label != api.Label || st.Confidence == "" || st.Bars != 10 || st.Top != strconv.Itoa(api.ClassID) {
		t.Errorf("upload: page shows %+v; the API answers %q (class %d)", st, api.Label, api.ClassID)
	}
	if !strings.HasPrefix(st.Input28, "data:image/png;base64,") || !st.HasImage || !st.Loaded || !strings.HasPrefix(st.Original, "blob:") {
		t.Errorf("upload: model input %.40q, image shown %v (loaded %v, src %.30q); want both", st.Input28, st.HasImage, st.Loaded, st.Original)
	}
	if err := chromedp.Do(ctx, chromedp.Sleep(500*time.Millisecond)); err != nil { // let the bars animate
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}

	// 2. A file that is not an image: refused on the page, nothing stale.
	resetState(t, ctx)
	if err := chromedp.Do(ctx, chromedp.SetUploadFiles(chromedp.ID("file"), []string{notImage})); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, ctx, "non-image file")
	noResult(t, "non-image file", st, api.Label)
	if !strings.Contains(st.Error, "notes.txt") || !strings.Contains(st.Error, "not an image") {
		t.Errorf("non-image file: error %q, want it to name the file and say it is not an image", st.Error)
	}
	if st.HasImage {
		t.Errorf("non-image file: an image (%.40q) is still shown", st.Original)
	}

	// 3. A URL that fails, right after a good answer.
	dark, _ := testImage(t, 0)
	imgs := newImageServer(t, dark)
	resetState(t, ctx)
	if err := chromedp.Do(ctx, chromedp.SetUploadFiles(chromedp.ID("file"), []string{photoPath})); err != nil {
		t.Fatal(err)
	}
	if st := waitState(t, ctx, "second upload"); st.State != "done" || st.Label != api.Label {
		t.Fatalf("second upload: %+v", st)
	}
	resetState(t, ctx)
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("url"), imgs.URL+"/missing.png"),
		chromedp.Click(chromedp.ID("go")),
	)
	if err != nil {
		t.Fatal(err)
	}
	st = waitState(t, ctx, "URL error")
	noResult(t, "URL error", st, api.Label)
	if !strings.Contains(st.Error, "404") || st.HasImage {
		t.Errorf("URL error: error %q (want the 404), image shown %v (want none)", st.Error, st.HasImage)
	}

	// 4. A URL that works: the answer and the image behind the URL.
	viaURL := decode[Result](t, do(t, "POST", ts.url+"/v1/classify", "application/json",
		[]byte(`{"url":"`+imgs.URL+`/shirt.png"}`)))
	if viaURL.Label == api.Label {
		t.Fatal("test images must get different labels so the page visibly changes")
	}
	resetState(t, ctx)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("url").value = ""`)); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("url"), imgs.URL+"/shirt.png"),
		chromedp.Click(chromedp.ID("go")),
	)
	if err != nil {
		t.Fatal(err)
	}
	st = waitState(t, ctx, "URL")
	if st.State != "done" || st.Label != viaURL.Label || st.Top != strconv.Itoa(viaURL.ClassID) || st.Error != "" {
		t.Errorf("URL: page shows %+v, the API answers %q", st, viaURL.Label)
	}
	// The image appears once the browser has loaded it through /image-view.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("original").naturalWidth > 0`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("URL: the image behind the URL is never shown: %v", err)
	}
	st, _ = chromedp.Run(ctx, chromedp.Evaluate[pageState](readPage))
	// The page fetches /image-view itself (an <img> could not send a
	// token) and shows the bytes as a blob.
	if !st.HasImage || !st.Loaded || !strings.HasPrefix(st.Original, "blob:") {
		t.Errorf("URL: image shown %v, loaded %v, src %q; want the fetched image via /image-view as a blob", st.HasImage, st.Loaded, st.Original)
	}

	// 5. A sample link: the server's own image, answered without network.
	resetState(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-sample="trouser.png"]`))); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, ctx, "sample link")
	if st.State != "done" || st.Error != "" || st.Top == "" {
		t.Errorf("sample link: page shows %+v, want an answer", st)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("original").naturalWidth > 0`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("sample link: the sample image is never shown: %v", err)
	}

	out := dir
	if d := os.Getenv("FASHION_SCREENSHOT_DIR"); d != "" {
		out = d
	}
	path := filepath.Join(out, "page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (label %q)", path, api.Label)
}

// TestPageAsksForToken drives the page of a server with bearer tokens: it
// must say a token is needed instead of failing silently, refuse a wrong
// one with a clear message, and work once the right one is entered.
func TestPageAsksForToken(t *testing.T) {
	ctx := newBrowser(t)
	file := filepath.Join(t.TempDir(), "tokens")
	const token = "s3cret-token-for-the-page"
	writeTokens(t, file, token)
	ts := startServer(t, Config{AuthTokenFile: file}, newFake())
	photoPath := filepath.Join(t.TempDir(), "shirt.png")
	if err := os.WriteFile(photoPath, productPhoto(t), 0o644); err != nil {
		t.Fatal(err)
	}
	tokenForm := `!document.getElementById("tokenform").hidden`
	err := chromedp.Do(ctx,
		chromedp.Navigate(ts.url+"/"),
		chromedp.WaitVisible(`//span[@id="model" and contains(text(), "access token required")]`),
	)
	if err != nil {
		t.Fatalf("the page never says a token is required: %v", err)
	}
	st, _ := chromedp.Run(ctx, chromedp.Evaluate[pageState](readPage))
	if shown, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](tokenForm)); !shown || !strings.Contains(st.Error, "access token") {
		t.Errorf("without a token: token form shown %v, error %q", shown, st.Error)
	}
	for _, tc := range []struct {
		token, chip string
	}{
		{"wrong-token-0123456789", "access token required"},
		{token, "fake"},
	} {
		err := chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.ID("token"), tc.token),
			chromedp.Click(chromedp.ID("usetoken")),
			chromedp.WaitVisible(`//span[@id="model" and contains(text(), "`+tc.chip+`")]`),
		)
		if err != nil {
			t.Fatalf("token %q: the model chip never shows %q: %v", tc.token, tc.chip, err)
		}
		if tc.token != token {
			if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("error").textContent.includes("refused the access token")`,
				chromedp.WithPollingTimeout(10*time.Second))); err != nil {
				t.Errorf("a wrong token is not reported as refused: %v", err)
			}
		}
	}
	st, _ = chromedp.Run(ctx, chromedp.Evaluate[pageState](readPage))
	if shown, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](tokenForm)); shown || st.Error != "" {
		t.Errorf("with the right token: token form shown %v, error %q; want neither", shown, st.Error)
	}
	resetState(t, ctx)
	if err := chromedp.Do(ctx, chromedp.SetUploadFiles(chromedp.ID("file"), []string{photoPath})); err != nil {
		t.Fatal(err)
	}
	if st := waitState(t, ctx, "upload with token"); st.State != "done" || st.Error != "" || st.Top == "" {
		t.Errorf("upload with the token: page shows %+v, want an answer", st)
	}
}

// TestPageShowsOutOfDistribution checks the page's "not sure" state with
// the real embedded model: a handwritten digit (MNIST, from the shared
// directory) is not clothing, and for the first digit the API marks
// "in_distribution": false, the page must say "Not sure" and name the
// best guess instead of presenting it as the answer.
func TestPageShowsOutOfDistribution(t *testing.T) {
	ctx := newBrowser(t)
	clf, err := predictor.Open(context.Background(), "", predictor.Options{}) // the embedded model
	if err != nil {
		t.Fatal(err)
	}
	digits, err := idx.LoadTest(filepath.Dir(datatest.SharedPath(t, "data/mnist-test/t10k-images-idx3-ubyte.gz")))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, Config{}, clf)
	var photo []byte
	var api Result
	for i := range min(50, digits.Images.N) {
		g := &image.Gray{Pix: digits.Images.Image(i), Stride: modelfile.Side, Rect: image.Rect(0, 0, modelfile.Side, modelfile.Side)}
		var buf bytes.Buffer
		if err := png.Encode(&buf, g); err != nil {
			t.Fatal(err)
		}
		api = decode[Result](t, do(t, "POST", ts.url+"/v1/classify", "image/png", buf.Bytes()))
		if api.InDistribution != nil && !*api.InDistribution {
			photo = buf.Bytes()
			break
		}
	}
	if photo == nil {
		t.Fatal("the API marks none of the first 50 MNIST digits out of distribution")
	}
	path := filepath.Join(t.TempDir(), "digit.png")
	if err := os.WriteFile(path, photo, 0o644); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(ts.url+"/"),
		chromedp.WaitVisible(chromedp.ID("drop")),
		chromedp.SetUploadFiles(chromedp.ID("file"), []string{path}),
	)
	if err != nil {
		t.Fatal(err)
	}
	st := waitState(t, ctx, "out-of-distribution answer")
	if st.State != "done" || st.Verdict != "ood" || st.Label != "Not sure" {
		t.Errorf("page shows %+v; the API says in_distribution false (best guess %s), want the \"Not sure\" state", st, api.Label)
	}
	if !strings.Contains(st.Confidence, "doesn't look like clothing") || !strings.Contains(st.Confidence, api.Label) {
		t.Errorf("explanation %q, want it to say it doesn't look like clothing and name the best guess %q", st.Confidence, api.Label)
	}
}

// TestPageSaysWhichModelAnswered: with a benchmark and a photo model, the
// page says which answered, and draws the answering model's classes.
func TestPageSaysWhichModelAnswered(t *testing.T) {
	ctx := newBrowser(t)
	routed, _, _ := routedFakes(t)
	ts := startServer(t, Config{}, routed)
	dir := t.TempDir()
	photoPath, datasetPath := filepath.Join(dir, "photo.png"), filepath.Join(dir, "dataset.png")
	dataset, _ := testImage(t, 200)
	if err := os.WriteFile(photoPath, productPhoto(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(datasetPath, dataset, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(ts.url+"/"),
		chromedp.WaitVisible(`//span[@id="model" and contains(text(), "photos: `+modelfile.PhotoName+`")]`),
	); err != nil {
		t.Fatalf("driving the page: %v", err)
	}
	for _, tt := range []struct {
		file, want string
		bars       int
	}{
		{photoPath, "answered by " + modelfile.PhotoName + " (the photo model)", 12},
		{datasetPath, "answered by " + modelfile.DefaultName + " (the Fashion-MNIST model", 10},
	} {
		resetState(t, ctx)
		if err := chromedp.Do(ctx, chromedp.SetUploadFiles(chromedp.ID("file"), []string{tt.file})); err != nil {
			t.Fatal(err)
		}
		st := waitState(t, ctx, filepath.Base(tt.file))
		if st.State != "done" || !strings.HasPrefix(st.Answered, tt.want) || st.Bars != tt.bars {
			t.Errorf("%s: page shows %+v; want %q and %d bars", filepath.Base(tt.file), st, tt.want, tt.bars)
		}
	}
}
