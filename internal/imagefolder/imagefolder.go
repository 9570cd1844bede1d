// Package imagefolder reads labelled photos stored ImageFolder-style (one
// directory per folder label) through the model's input conversion, maps
// folders to class ids with a mapping file, and mixes them into
// Fashion-MNIST training data.
//
// The mapping file is tab-separated with a header line, as MAPPING.tsv of
// the clothing-photos set:
//
//	folder	fashion_mnist	meaning
//	t-shirt	0	T-shirt/top
//	shoes	5|7|9	footwear: the folder does not say which
//	hat	none	not a Fashion-MNIST class
//
// The second column lists the folder's classes, separated by "|": class ids
// or class names of the model; a name the model does not have is a new
// class, appended to the class list (a shop's "Hat"). A folder with several
// classes gets a set-valued target (the image is one of them; see
// nn.CrossEntropy.Sets); a folder mapped to "none" is loaded, for
// evaluation (what an out-of-distribution detector says about it), but never
// trained on. Further columns are comments.
package imagefolder

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/fashion-classifier/fashion/internal/atomicfile"
	"github.com/fashion-classifier/fashion/internal/imageprep"
)

// Folder is one line of a mapping file.
type Folder struct {
	Name    string // directory name
	Classes []int  // class ids; nil for "none"
}

// Mapping is a parsed mapping file: the folders in file order and the
// class list they refer to (the model's classes plus any new ones).
type Mapping struct {
	Folders []Folder
	Classes []string
}

// Limits on what a mapping file may hold.
const (
	maxMappingBytes = 1 << 20
	maxFolders      = 1000
	maxClasses      = 255 // labels are bytes and set labels follow the classes
)

// ReadMapping parses a mapping file against the model's class list.
func ReadMapping(r io.Reader, classes []string) (*Mapping, error) {
	m := &Mapping{Classes: slices.Clone(classes)}
	sc := bufio.NewScanner(io.LimitReader(r, maxMappingBytes))
	seen := map[string]bool{}
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if line == 1 || strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue // header, blank or comment
		}
		cols := strings.Split(text, "\t")
		if len(cols) < 2 {
			return nil, fmt.Errorf("mapping line %d: want folder<TAB>classes, got %q", line, text)
		}
		name := strings.TrimSpace(cols[0])
		if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
			return nil, fmt.Errorf("mapping line %d: bad folder name %q", line, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("mapping line %d: folder %q listed twice", line, name)
		}
		seen[name] = true
		f := Folder{Name: name}
		if target := strings.TrimSpace(cols[1]); target != "none" {
			for _, tok := range strings.Split(target, "|") {
				tok = strings.TrimSpace(tok)
				id, err := m.classID(tok)
				if err != nil {
					return nil, fmt.Errorf("mapping line %d: %w", line, err)
				}
				if !slices.Contains(f.Classes, id) {
					f.Classes = append(f.Classes, id)
				}
			}
		}
		m.Folders = append(m.Folders, f)
		if len(m.Folders) > maxFolders {
			return nil, fmt.Errorf("mapping: more than %d folders", maxFolders)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mapping: %w", err)
	}
	if len(m.Folders) == 0 {
		return nil, errors.New("mapping lists no folders")
	}
	return m, nil
}

// classID resolves a class id or name, appending unknown names as new
// classes.
func (m *Mapping) classID(tok string) (int, error) {
	if tok == "" {
		return 0, errors.New("empty class")
	}
	if id, err := strconv.Atoi(tok); err == nil {
		if id < 0 || id >= len(m.Classes) {
			return 0, fmt.Errorf("class id %d out of range (the model has %d classes)", id, len(m.Classes))
		}
		return id, nil
	}
	if i := slices.Index(m.Classes, tok); i >= 0 {
		return i, nil
	}
	if len(m.Classes) >= maxClasses {
		return 0, fmt.Errorf("too many classes (at most %d)", maxClasses)
	}
	m.Classes = append(m.Classes, tok)
	return len(m.Classes) - 1, nil
}

// ReadMappingFile is ReadMapping on a file.
func ReadMappingFile(path string, classes []string) (*Mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	defer f.Close()
	m, err := ReadMapping(f, classes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Set is a directory of photos converted to model inputs.
type Set struct {
	Mapping *Mapping
	Pix     []uint8  // N images of imageprep.Side² pixels, row-major
	Folder  []int    // index into Mapping.Folders of each image
	Files   []string // path of each image
	// DatasetLike says of each image whether it was already a
	// Fashion-MNIST-style image (imageprep.Input.DatasetLike), which picks
	// the model that answers it when two are served (predictor.Routed).
	DatasetLike []bool
}

// Len is the number of images.
func (s *Set) Len() int { return len(s.Folder) }

// Image returns image i's pixels, sharing memory with s.Pix.
func (s *Set) Image(i int) []uint8 {
	const px = imageprep.Side * imageprep.Side
	return s.Pix[i*px : (i+1)*px : (i+1)*px]
}

// Targets returns image i's classes (nil for a "none" folder).
func (s *Set) Targets(i int) []int { return s.Mapping.Folders[s.Folder[i]].Classes }

// imageExts are the file name endings Load reads.
var imageExts = []string{".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}

// maxImages bounds how many images one Load reads.
const maxImages = 200_000

// Load reads every image file in dir/<folder> for each folder of m, in
// sorted order, and converts it with imageprep.Prepare (lim as there),
// using up to GOMAXPROCS goroutines. A folder that does not exist is an
// error; a file that does not decode is reported with its path.
func Load(ctx context.Context, dir string, m *Mapping, lim imageprep.Limits) (*Set, error) {
	s := &Set{Mapping: m}
	for fi, f := range m.Folders {
		entries, err := os.ReadDir(filepath.Join(dir, f.Name))
		if err != nil {
			return nil, fmt.Errorf("image folder: %w", err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() && slices.Contains(imageExts, strings.ToLower(filepath.Ext(e.Name()))) {
				s.Files = append(s.Files, filepath.Join(dir, f.Name, e.Name()))
				s.Folder = append(s.Folder, fi)
			}
		}
		if len(s.Files) > maxImages {
			return nil, fmt.Errorf("image folder %s: more than %d images", dir, maxImages)
		}
	}
	const px = imageprep.Side * imageprep.Side
	s.Pix = make([]uint8, len(s.Files)*px)
	s.DatasetLike = make([]bool, len(s.Files))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		firstEr error
		next    = make(chan int)
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				err := func() error {
					data, err := os.ReadFile(s.Files[i])
					if err != nil {
						return err
					}
					g, err := imageprep.Prepare(data, lim)
					if err != nil {
						return fmt.Errorf("%s: %w", s.Files[i], err)
					}
					copy(s.Pix[i*px:(i+1)*px], g.Pix)
					s.DatasetLike[i] = g.DatasetLike
					return nil
				}()
				if err != nil {
					mu.Lock()
					if firstEr == nil {
						firstEr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
feed:
	for i := range s.Files {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if firstEr != nil {
		return nil, fmt.Errorf("image folder: %w", firstEr)
	}
	return s, nil
}

// Labels returns one training label per image in the encoding of
// nn.CrossEntropy: a class id for a folder of one class, len(classes)+j
// for the j-th distinct set of several classes, and ok false for images of
// "none" folders, which are not to be trained on.
func (s *Set) Labels() (labels []uint8, ok []bool, sets [][]int) {
	k := len(s.Mapping.Classes)
	setOf := map[string]int{}
	labels = make([]uint8, s.Len())
	ok = make([]bool, s.Len())
	for i := range labels {
		t := s.Targets(i)
		switch len(t) {
		case 0:
			continue
		case 1:
			labels[i] = uint8(t[0])
		default:
			key := fmt.Sprint(t)
			j, seen := setOf[key]
			if !seen {
				j = len(sets)
				setOf[key] = j
				sets = append(sets, t)
			}
			labels[i] = uint8(k + j)
		}
		ok[i] = true
	}
	return labels, ok, sets
}

// cacheVersion changes whenever the conversion changes what a cached set
// would hold.
const cacheVersion = "imagefolder-cache/2 imageprep-object/1"

type cached struct {
	Version string
	Dir     string
	Folders []Folder
	Files   []string
	Folder  []int
	Pix     []uint8
	// DatasetLike is Set.DatasetLike (since imagefolder-cache/2).
	DatasetLike []bool
}

// LoadCached is Load with a cache file: when cache holds the conversion of
// the same files and folders by the same conversion version it is read
// instead; otherwise Load runs and the cache is (re)written. An empty cache
// path is plain Load.
func LoadCached(ctx context.Context, dir string, m *Mapping, lim imageprep.Limits, cache string) (*Set, error) {
	if cache == "" {
		return Load(ctx, dir, m, lim)
	}
	if f, err := os.Open(cache); err == nil {
		var c cached
		err := gob.NewDecoder(f).Decode(&c)
		f.Close()
		if err == nil && c.Version == cacheVersion && c.Dir == dir && slices.EqualFunc(c.Folders, m.Folders, func(a, b Folder) bool {
			return a.Name == b.Name && slices.Equal(a.Classes, b.Classes)
		}) && len(c.Pix) == len(c.Files)*imageprep.Side*imageprep.Side && len(c.Folder) == len(c.Files) && len(c.DatasetLike) == len(c.Files) {
			return &Set{Mapping: m, Pix: c.Pix, Folder: c.Folder, Files: c.Files, DatasetLike: c.DatasetLike}, nil
		}
	}
	s, err := Load(ctx, dir, m, lim)
	if err != nil {
		return nil, err
	}
	err = atomicfile.Write(cache, func(w io.Writer) error {
		return gob.NewEncoder(w).Encode(cached{Version: cacheVersion, Dir: dir, Folders: m.Folders, Files: s.Files, Folder: s.Folder, Pix: s.Pix, DatasetLike: s.DatasetLike})
	})
	if err != nil {
		return nil, fmt.Errorf("writing photo cache: %w", err)
	}
	return s, nil
}
