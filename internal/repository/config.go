package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/fashion-classifier/fashion/internal/safefile"
)

// maxConfigBytes bounds a model's config.json: it holds a few names and
// numbers, so anything larger is a mistake or an attack.
const maxConfigBytes = 64 << 10

// ModelConfig is a model's optional DIR/NAME/config.json: how its input is
// normalised, its class names and which of its versions to serve. Every
// field may be omitted; the model file's own metadata (and for ONNX files
// their sidecar, else the Fashion-MNIST defaults) fills the gaps.
type ModelConfig struct {
	// Mean and Std normalise pixel/255 as (x−Mean)/Std. Only ONNX files
	// take them: our safetensors files record their own.
	Mean *float32 `json:"mean,omitempty"`
	Std  *float32 `json:"std,omitempty"`
	// Classes are the labels in class-id order (ONNX files only).
	Classes []string `json:"classes,omitempty"`
	// VersionPolicy chooses the versions served; default {"latest":{"num_versions":1}}.
	VersionPolicy *VersionPolicy `json:"version_policy,omitempty"`
}

// VersionPolicy is Triton's model version policy: exactly one of Latest,
// All or Specific.
type VersionPolicy struct {
	// Latest serves the NumVersions highest version numbers.
	Latest *struct {
		NumVersions int `json:"num_versions"`
	} `json:"latest,omitempty"`
	// All serves every version present.
	All *struct{} `json:"all,omitempty"`
	// Specific serves the listed versions that are present.
	Specific *struct {
		Versions []int64 `json:"versions"`
	} `json:"specific,omitempty"`
}

// check reports a policy that is not exactly one well-formed choice.
func (p *VersionPolicy) check() error {
	n := 0
	if p.Latest != nil {
		n++
		if p.Latest.NumVersions < 1 {
			return fmt.Errorf("version_policy.latest.num_versions is %d, want at least 1", p.Latest.NumVersions)
		}
	}
	if p.All != nil {
		n++
	}
	if p.Specific != nil {
		n++
		if len(p.Specific.Versions) == 0 {
			return errors.New("version_policy.specific.versions is empty")
		}
		for _, v := range p.Specific.Versions {
			if v < 1 {
				return fmt.Errorf("version_policy.specific.versions has %d, want positive version numbers", v)
			}
		}
	}
	if n != 1 {
		return fmt.Errorf("version_policy has %d choices, want exactly one of latest, all, specific", n)
	}
	return nil
}

// choose returns the versions of present (sorted ascending) that the policy
// serves, ascending.
func (p *VersionPolicy) choose(present []int64) []int64 {
	switch {
	case p == nil:
		return present[max(0, len(present)-1):]
	case p.All != nil:
		return present
	case p.Specific != nil:
		var out []int64
		for _, v := range present {
			if slices.Contains(p.Specific.Versions, v) {
				out = append(out, v)
			}
		}
		return out
	default:
		return present[max(0, len(present)-p.Latest.NumVersions):]
	}
}

// readConfig reads path as a ModelConfig; a missing file is the zero
// config. Unknown fields are refused, so a misspelt key is an error rather
// than a silently ignored setting.
func readConfig(path string) (ModelConfig, error) {
	var c ModelConfig
	// safefile, not os.Open: a FIFO named config.json would block the scan.
	data, err := safefile.ReadFile(context.Background(), path, maxConfigBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("reading model config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("model config %s: %w", path, err)
	}
	if dec.More() {
		return c, fmt.Errorf("model config %s: data after the JSON object", path)
	}
	if c.Std != nil && !(*c.Std > 0) {
		return c, fmt.Errorf("model config %s: std must be positive, got %v", path, *c.Std)
	}
	if c.VersionPolicy != nil {
		if err := c.VersionPolicy.check(); err != nil {
			return c, fmt.Errorf("model config %s: %w", path, err)
		}
	}
	return c, nil
}
