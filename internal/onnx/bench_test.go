package onnx

import (
	"fmt"
	"testing"

	"github.com/fashion-classifier/fashion/internal/datatest"
	"github.com/fashion-classifier/fashion/internal/modelfile"
)

// BenchmarkONNXvsNative compares the embedded VGG run natively with the
// same network exported to ONNX and loaded back, and with the PyTorch
// export of the same architecture from the shared models (when present).
// Each reports images per second of wall-clock time and per second of CPU
// time (the fairer comparison on a busy machine).
func BenchmarkONNXvsNative(b *testing.B) {
	native, err := modelfile.Embedded()
	if err != nil {
		b.Fatal(err)
	}
	net, meta := embeddedNet(b)
	data, err := Export(net, ExportMeta{Arch: meta.Arch, Classes: meta.Classes, Mean: meta.Mean, Std: meta.Std})
	if err != nil {
		b.Fatal(err)
	}
	exported, err := Decode(data, Options{})
	if err != nil {
		b.Fatal(err)
	}
	type predictor interface {
		Predict(x []float32, n int) ([]float32, error)
	}
	runs := []struct {
		name string
		m    predictor
	}{{"native", native}, {"onnx-export", exported}}
	if path, ok := datatest.LookupShared("models/vgg_w32_fmnist.onnx"); ok {
		if m, err := decodeFile(path, Options{}); err == nil {
			runs = append(runs, struct {
				name string
				m    predictor
			}{"onnx-pytorch", m})
		}
	}
	for _, batch := range []int{1, 256} {
		x := randomImages(batch)
		for _, r := range runs {
			b.Run(fmt.Sprintf("batch=%d/%s", batch, r.name), func(b *testing.B) {
				if _, err := r.m.Predict(x, batch); err != nil { // warm the buffers
					b.Fatal(err)
				}
				cpu0 := cpuTime()
				b.ResetTimer()
				for b.Loop() {
					if _, err := r.m.Predict(x, batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "img/s")
				if cpu := cpuTime() - cpu0; cpu > 0 {
					b.ReportMetric(float64(b.N*batch)/cpu.Seconds(), "img/cpu-s")
				}
			})
		}
	}
}
