// Package model defines the classifier architectures, their safetensors
// files and the default model embedded in the binary.
package modelfile

import "github.com/fashion-classifier/fashion/internal/imageprep"

// Side is the height and width, in pixels, of the model's grayscale input:
// the image the conversion pipeline makes (defined once, in imageprep).
const Side = imageprep.Side

// Pixels is the number of input values per image (Side×Side, one channel).
const Pixels = Side * Side

// FashionClasses are the ten Fashion-MNIST labels in class-id order.
var FashionClasses = []string{
	"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
	"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

// Fashion-MNIST input normalisation: x = (pixel/255 − Mean) / Std.
const (
	DefaultMean = 0.2860
	DefaultStd  = 0.3530
)

// Info describes a loaded model: what it is, how its input is normalised and
// how well it did on the test set. Everything a server or CLI shows about a
// model comes from here.
type Info struct {
	Name         string   `json:"name"`          // serving name, e.g. "fashion-mnist"
	Arch         string   `json:"arch"`          // "vgg", "mobilenetv3-small", "onnx"
	Classes      []string `json:"classes"`       // label per class id
	Mean         float32  `json:"mean"`          // normalisation mean on pixel/255
	Std          float32  `json:"std"`           // normalisation std on pixel/255
	SHA256       string   `json:"sha256"`        // checksum of the weights file
	Source       string   `json:"source"`        // "embedded" or the file path
	TestAccuracy float64  `json:"test_accuracy"` // on the official 10k test set, 0 if unknown
	Params       int      `json:"params"`        // number of trainable parameters
	Precision    string   `json:"precision"`     // "float32" or "int8" (quantized layers)
	Storage      string   `json:"storage"`       // how the file stores the float weights: "f32" or "f16" (half precision, computed in float32)
	// Temperature divides the logits before the softmax (fitted by
	// `fashion calibrate`); 0 when the model is not calibrated.
	Temperature float64 `json:"temperature,omitempty"`
}

// Normalize converts 8-bit pixels to the model's float input, writing
// len(pix) values into dst. It is the only place pixel normalisation happens.
func (in Info) Normalize(dst []float32, pix []uint8) {
	scale := 1 / (255 * in.Std)
	off := in.Mean / in.Std
	for i, p := range pix {
		dst[i] = float32(p)*scale - off
	}
}
