package idx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The standard names of the four dataset files, without the ".gz" suffix
// that the compressed copies carry.
const (
	TrainImagesName = "train-images-idx3-ubyte"
	TrainLabelsName = "train-labels-idx1-ubyte"
	TestImagesName  = "t10k-images-idx3-ubyte"
	TestLabelsName  = "t10k-labels-idx1-ubyte"
)

// Where FindDir looks for the dataset, after the flag and the environment.
const (
	// EnvVar is the environment variable that names the data directory.
	EnvVar = "FASHION_DATA"
	// LocalDir is the directory, relative to the working directory, that
	// "fashion data fetch" writes to by default.
	LocalDir = "data/fashion-mnist"
	// SystemDir is where Debian's dataset-fashion-mnist package installs
	// the files.
	SystemDir = "/usr/share/datasets/fashion-mnist"
)

// Names returns the standard names of the four dataset files in a fixed
// order: training images and labels, then test images and labels.
func Names() []string {
	return []string{TrainImagesName, TrainLabelsName, TestImagesName, TestLabelsName}
}

// Locate returns the path of the dataset file name in dir: the
// uncompressed file if present, else the ".gz" one. It returns an error
// wrapping fs.ErrNotExist when neither exists.
func Locate(dir, name string) (string, error) {
	for _, p := range []string{filepath.Join(dir, name), filepath.Join(dir, name+".gz")} {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.Mode().IsRegular() {
				return "", fmt.Errorf("%s is not a regular file", p)
			}
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("looking for %s: %w", name, err)
		}
	}
	return "", fmt.Errorf("%s[.gz] not found in %s: %w", name, dir, fs.ErrNotExist)
}

// Load reads the training and test sets from dir, where each of the four
// standard files may be raw or gzip-compressed. Errors name the file and
// what is wrong with it. Both sets must be non-empty, have as many labels
// as images, and share one image size.
func Load(dir string) (*Dataset, error) {
	// Decompression dominates; reading the test set alongside the
	// training set keeps a second core busy.
	var (
		test    Set
		testErr error
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		test, testErr = loadSet(dir, TestImagesName, TestLabelsName)
	}()
	train, err := loadSet(dir, TrainImagesName, TrainLabelsName)
	<-done
	if err != nil {
		return nil, err
	}
	if testErr != nil {
		return nil, testErr
	}
	if train.Images.Rows != test.Images.Rows || train.Images.Cols != test.Images.Cols {
		return nil, fmt.Errorf("training images are %d×%d but test images are %d×%d in %s",
			train.Images.Rows, train.Images.Cols, test.Images.Rows, test.Images.Cols, dir)
	}
	return &Dataset{Train: train, Test: test}, nil
}

// LoadTest reads only the 10,000-image test set from dir, which is all
// that evaluation needs.
func LoadTest(dir string) (Set, error) {
	return loadSet(dir, TestImagesName, TestLabelsName)
}

func loadSet(dir, imagesName, labelsName string) (Set, error) {
	ipath, err := Locate(dir, imagesName)
	if err != nil {
		return Set{}, fmt.Errorf("%w", err)
	}
	lpath, err := Locate(dir, labelsName)
	if err != nil {
		return Set{}, fmt.Errorf("%w", err)
	}
	var images Images
	if err := readFile(ipath, func(f *os.File) (err error) {
		images, err = ReadImages(f)
		return err
	}); err != nil {
		return Set{}, err
	}
	var labels []uint8
	if err := readFile(lpath, func(f *os.File) (err error) {
		labels, err = ReadLabels(f)
		return err
	}); err != nil {
		return Set{}, err
	}
	switch {
	case images.N == 0:
		return Set{}, fmt.Errorf("%s: contains no images", ipath)
	case len(labels) != images.N:
		return Set{}, fmt.Errorf("%s has %d images but %s has %d labels", ipath, images.N, lpath, len(labels))
	}
	return Set{Images: images, Labels: labels}, nil
}

// readFile opens path, runs read on it and names the file in any error.
func readFile(path string, read func(*os.File) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	defer f.Close()
	if err := read(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// FindDir returns the directory holding the dataset. It looks, in order,
// at flagValue (the -data flag), the FASHION_DATA variable read through
// getenv, LocalDir and SystemDir. A directory set explicitly by the flag
// or the variable must hold the four files; it is an error rather than a
// reason to fall back, so a typo never silently selects other data. When
// nothing is found, the error lists every place looked at and how to get
// the data.
func FindDir(flagValue string, getenv func(string) string) (string, error) {
	return findDir(flagValue, getenv, []string{LocalDir, SystemDir})
}

func findDir(flagValue string, getenv func(string) string, defaults []string) (string, error) {
	if flagValue != "" {
		if err := checkDir(flagValue); err != nil {
			return "", fmt.Errorf("data directory %s (from the -data flag) %w", flagValue, err)
		}
		return flagValue, nil
	}
	if env := getenv(EnvVar); env != "" {
		if err := checkDir(env); err != nil {
			return "", fmt.Errorf("data directory %s (from %s) %w", env, EnvVar, err)
		}
		return env, nil
	}
	var b strings.Builder
	b.WriteString("Fashion-MNIST data not found; looked at:\n")
	b.WriteString("\t-data flag: not set\n")
	fmt.Fprintf(&b, "\t%s environment variable: not set\n", EnvVar)
	for _, d := range defaults {
		err := checkDir(d)
		if err == nil {
			return d, nil
		}
		place := d
		if !filepath.IsAbs(d) {
			if abs, aerr := filepath.Abs(d); aerr == nil {
				place = "./" + d + " (" + abs + ")"
			}
		}
		fmt.Fprintf(&b, "\t%s: %v\n", place, err)
	}
	fmt.Fprintf(&b, "get it with \"fashion data fetch -dir ./%s\" or \"apt-get install dataset-fashion-mnist\", or point -data or %s at a directory holding it", LocalDir, EnvVar)
	return "", errors.New(b.String())
}

// checkDir reports whether dir is a directory holding all four dataset
// files, raw or compressed, and if not, what is missing.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("does not exist")
		}
		return err
	}
	if !fi.IsDir() {
		return errors.New("is not a directory")
	}
	var missing []string
	for _, name := range Names() {
		if _, err := Locate(dir, name); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			missing = append(missing, name+"[.gz]")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lacks %s", strings.Join(missing, ", "))
	}
	return nil
}
