package idx

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixture is a small synthetic dataset: the raw IDX bytes of each file and
// the matching File list with checksums.
type fixture struct {
	raw   map[string][]byte
	files []File
}

func newFixture(t testing.TB, nTrain, nTest int) fixture {
	t.Helper()
	raw := map[string][]byte{
		TrainImagesName: encodeImages(t, testImages(nTrain, 28, 28)),
		TrainLabelsName: encodeLabels(t, testLabels(nTrain)),
		TestImagesName:  encodeImages(t, testImages(nTest, 28, 28)),
		TestLabelsName:  encodeLabels(t, testLabels(nTest)),
	}
	var files []File
	for _, name := range Names() {
		sum := sha256.Sum256(raw[name])
		files = append(files, File{Name: name, SHA256: hex.EncodeToString(sum[:])})
	}
	return fixture{raw: raw, files: files}
}

// write stores the fixture in dir, gzipping the files whose names are in
// gzipped.
func (fx fixture) write(t testing.TB, dir string, gzipped ...string) {
	t.Helper()
	for name, data := range fx.raw {
		path := filepath.Join(dir, name)
		for _, g := range gzipped {
			if g == name {
				data, path = gz(t, data), path+".gz"
			}
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoad(t *testing.T) {
	fx := newFixture(t, 12, 5)
	dir := t.TempDir()
	fx.write(t, dir, TrainImagesName, TestLabelsName)
	ds, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, c := range []struct {
		name      string
		set       Set
		n         int
		wantPix   []byte
		wantLabel []byte
	}{
		{"train", ds.Train, 12, fx.raw[TrainImagesName][16:], fx.raw[TrainLabelsName][8:]},
		{"test", ds.Test, 5, fx.raw[TestImagesName][16:], fx.raw[TestLabelsName][8:]},
	} {
		im := c.set.Images
		if im.N != c.n || im.Rows != 28 || im.Cols != 28 {
			t.Errorf("%s: got %d images of %d×%d, want %d of 28×28", c.name, im.N, im.Rows, im.Cols, c.n)
		}
		if string(im.Pix) != string(c.wantPix) {
			t.Errorf("%s: pixels differ from the file", c.name)
		}
		if string(c.set.Labels) != string(c.wantLabel) {
			t.Errorf("%s: labels differ from the file", c.name)
		}
	}

	test, err := LoadTest(dir)
	if err != nil {
		t.Fatalf("LoadTest: %v", err)
	}
	if test.Images.N != 5 || len(test.Labels) != 5 {
		t.Fatalf("LoadTest: got %d images, %d labels, want 5 and 5", test.Images.N, len(test.Labels))
	}
}

func TestLoadPrefersRaw(t *testing.T) {
	fx := newFixture(t, 3, 2)
	dir := t.TempDir()
	fx.write(t, dir)
	// A broken .gz beside a good raw file must not be read.
	if err := os.WriteFile(filepath.Join(dir, TestImagesName+".gz"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTest(dir); err != nil {
		t.Fatalf("LoadTest: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(t *testing.T, dir string)
		// want are substrings the error must contain.
		want []string
	}{
		{"missing labels", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, TrainLabelsName))
		}, []string{TrainLabelsName + "[.gz] not found in"}},
		{"truncated images", func(t *testing.T, dir string) {
			truncate(t, filepath.Join(dir, TestImagesName), 100)
		}, []string{TestImagesName + ": truncated: header declares 4 images of 28×28", "only 84 bytes follow"}},
		{"truncated gzip images", func(t *testing.T, dir string) {
			path := filepath.Join(dir, TrainImagesName)
			data := readTestFile(t, path)
			remove(t, path)
			z := gz(t, data)
			writeFile(t, path+".gz", z[:len(z)/2])
		}, []string{TrainImagesName + ".gz: truncated", "gzip stream ends early"}},
		{"count mismatch", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, TestLabelsName), encodeLabels(t, testLabels(3)))
		}, []string{TestImagesName + " has 4 images but", TestLabelsName + " has 3 labels"}},
		{"bad label", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, TrainLabelsName), cat(header(LabelsMagic, 6), []byte{0, 1, 2, 3, 4, 11}))
		}, []string{TrainLabelsName + ": label 11 at index 5 is not a class"}},
		{"swapped files", func(t *testing.T, dir string) {
			img, lbl := filepath.Join(dir, TestImagesName), filepath.Join(dir, TestLabelsName)
			a, b := readTestFile(t, img), readTestFile(t, lbl)
			writeFile(t, img, b)
			writeFile(t, lbl, a)
		}, []string{TestImagesName + ": magic number 0x00000801 is that of a label file"}},
		{"empty set", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, TestImagesName), encodeImages(t, testImages(0, 28, 28)))
			writeFile(t, filepath.Join(dir, TestLabelsName), encodeLabels(t, nil))
		}, []string{TestImagesName + ": contains no images"}},
		{"size mismatch", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, TestImagesName), encodeImages(t, testImages(4, 32, 32)))
		}, []string{"training images are 28×28 but test images are 32×32"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			newFixture(t, 6, 4).write(t, dir)
			tt.modify(t, dir)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load succeeded on a broken dataset")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestFindDir(t *testing.T) {
	root := t.TempDir()
	good := func(name string) string {
		d := filepath.Join(root, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		newFixture(t, 1, 1).write(t, d, TrainImagesName)
		return d
	}
	flagDir, envDir, localDir, systemDir := good("flag"), good("env"), good("local"), good("system")
	incomplete := filepath.Join(root, "incomplete")
	if err := os.Mkdir(incomplete, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(incomplete, TestImagesName+".gz"), nil)
	absent := filepath.Join(root, "absent")
	aFile := filepath.Join(root, "file")
	writeFile(t, aFile, nil)

	tests := []struct {
		name     string
		flag     string
		env      string
		defaults []string
		want     string   // directory expected, or "" for an error
		errWant  []string // substrings of the error
	}{
		{"flag first", flagDir, envDir, []string{localDir, systemDir}, flagDir, nil},
		{"env second", "", envDir, []string{localDir, systemDir}, envDir, nil},
		{"local third", "", "", []string{localDir, systemDir}, localDir, nil},
		{"system last", "", "", []string{absent, systemDir}, systemDir, nil},
		{"incomplete default skipped", "", "", []string{incomplete, systemDir}, systemDir, nil},
		{"bad flag is an error, not a fallback", absent, envDir, []string{localDir}, "", []string{absent + " (from the -data flag) does not exist"}},
		{"bad env is an error, not a fallback", "", incomplete, []string{localDir}, "", []string{
			incomplete + " (from FASHION_DATA) lacks " + TrainImagesName + "[.gz], " + TrainLabelsName + "[.gz], " + TestLabelsName + "[.gz]"}},
		{"flag not a directory", aFile, "", nil, "", []string{aFile + " (from the -data flag) is not a directory"}},
		{"nothing found", "", "", []string{absent, incomplete}, "", []string{
			"-data flag: not set",
			"FASHION_DATA environment variable: not set",
			absent + ": does not exist",
			incomplete + ": lacks " + TrainImagesName,
			"fashion data fetch -dir ./data/fashion-mnist",
			"apt-get install dataset-fashion-mnist",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []string
			getenv := func(k string) string {
				asked = append(asked, k)
				if k == EnvVar {
					return tt.env
				}
				return ""
			}
			got, err := findDir(tt.flag, getenv, tt.defaults)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("findDir = %q, %v; want %q", got, err, tt.want)
				}
				if tt.flag == "" && (len(asked) != 1 || asked[0] != EnvVar) {
					t.Errorf("looked up environment %v, want [%s]", asked, EnvVar)
				}
				return
			}
			if err == nil {
				t.Fatalf("findDir = %q, want an error", got)
			}
			for _, w := range tt.errWant {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestFindDirDefaults checks the real default list through the exported
// function: ./data/fashion-mnist is found relative to the working
// directory.
func TestFindDirDefaults(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	if err := os.MkdirAll(LocalDir, 0o755); err != nil {
		t.Fatal(err)
	}
	newFixture(t, 1, 1).write(t, LocalDir)
	got, err := FindDir("", func(string) string { return "" })
	if err != nil || got != LocalDir {
		t.Fatalf("FindDir = %q, %v; want %q", got, err, LocalDir)
	}
}

func TestVerify(t *testing.T) {
	fx := newFixture(t, 3, 2)
	tests := []struct {
		name   string
		modify func(t *testing.T, dir string)
		want   []Status // per file, in Names order
	}{
		{"all good", func(*testing.T, string) {}, []Status{StatusOK, StatusOK, StatusOK, StatusOK}},
		{"missing", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, TrainLabelsName))
		}, []Status{StatusOK, StatusMissing, StatusOK, StatusOK}},
		{"mismatch", func(t *testing.T, dir string) {
			p := filepath.Join(dir, TestLabelsName)
			d := readTestFile(t, p)
			d[len(d)-1] ^= 1
			writeFile(t, p, d)
		}, []Status{StatusOK, StatusOK, StatusOK, StatusMismatch}},
		{"corrupt gzip", func(t *testing.T, dir string) {
			p := filepath.Join(dir, TrainImagesName+".gz")
			truncate(t, p, 30)
		}, []Status{StatusError, StatusOK, StatusOK, StatusOK}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fx.write(t, dir, TrainImagesName)
			tt.modify(t, dir)
			got, err := verifyFiles(dir, fx.files)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d statuses, want %d", len(got), len(tt.want))
			}
			allOK := true
			for i, st := range got {
				if st.Name != fx.files[i].Name || st.Want != fx.files[i].SHA256 {
					t.Errorf("status %d is for %s/%s, want %s/%s", i, st.Name, st.Want, fx.files[i].Name, fx.files[i].SHA256)
				}
				if st.Status != tt.want[i] {
					t.Errorf("%s: status %v (err %v), want %v", st.Name, st.Status, st.Err, tt.want[i])
				}
				if st.Status == StatusOK && st.Got != st.Want {
					t.Errorf("%s: OK but Got %s != Want %s", st.Name, st.Got, st.Want)
				}
				if st.Status == StatusError && st.Err == nil {
					t.Errorf("%s: StatusError without Err", st.Name)
				}
				allOK = allOK && tt.want[i] == StatusOK
			}
			if allOK != (err == nil) {
				t.Errorf("all files OK = %v but error = %v", allOK, err)
			}
		})
	}
}

func TestVerifyOfficialSums(t *testing.T) {
	dir := t.TempDir()
	newFixture(t, 2, 2).write(t, dir)
	got, err := Verify(dir)
	if err == nil || !strings.Contains(err.Error(), "4 of 4 files") {
		t.Fatalf("Verify of synthetic files: error %v, want 4 of 4 failing", err)
	}
	for _, st := range got {
		if st.Status != StatusMismatch {
			t.Errorf("%s: %v, want mismatch", st.Name, st.Status)
		}
	}
	if _, err := Verify(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Verify of a missing directory: %v, want ErrNotExist", err)
	}
}

// TestRealDataset loads the real Fashion-MNIST files when FASHION_DATA
// names them (CI sets it) and checks the set's well-known shape.
func TestRealDataset(t *testing.T) {
	dir := realDataDir(t)
	if raceEnabled {
		t.Skip("skipped under the race detector, which makes decompressing the real 60 MB take minutes; TestLoad covers Load's concurrency")
	}
	start := time.Now()
	ds, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	t.Logf("loaded %s in %v", dir, time.Since(start))
	for _, c := range []struct {
		name string
		set  Set
		n    int
	}{{"train", ds.Train, 60000}, {"test", ds.Test, 10000}} {
		im := c.set.Images
		if im.N != c.n || im.Rows != 28 || im.Cols != 28 || len(c.set.Labels) != c.n {
			t.Errorf("%s: %d images of %d×%d with %d labels, want %d of 28×28", c.name, im.N, im.Rows, im.Cols, len(c.set.Labels), c.n)
		}
		// Fashion-MNIST is balanced: every class has a tenth of each set.
		var count [NumClasses]int
		for _, l := range c.set.Labels {
			count[l]++
		}
		for class, k := range count {
			if k != c.n/NumClasses {
				t.Errorf("%s: class %d has %d images, want %d", c.name, class, k, c.n/NumClasses)
			}
		}
	}
	statuses, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify(%s): %v", dir, err)
	}
	if len(statuses) != 4 {
		t.Fatalf("Verify returned %d statuses, want 4", len(statuses))
	}
}

// BenchmarkLoad measures loading the real dataset (FASHION_DATA).
func BenchmarkLoad(b *testing.B) {
	dir := realDataDir(b)
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// realDataDir returns the directory FASHION_DATA names, skipping the test
// when it is unset. A relative path is taken relative to the module root
// (where .ci/run sets it), because tests run in the package directory.
func realDataDir(t testing.TB) string {
	dir := os.Getenv(EnvVar)
	if dir == "" {
		t.Skipf("%s is not set: set it to a directory holding the four Fashion-MNIST IDX files to test the real dataset", EnvVar)
	}
	if !filepath.IsAbs(dir) {
		if _, err := os.Stat(dir); err != nil {
			dir = filepath.Join("..", "..", dir)
		}
	}
	return dir
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func readTestFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
