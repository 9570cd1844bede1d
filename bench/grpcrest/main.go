// Command grpcrest compares the Open Inference Protocol over gRPC with the
// same protocol over REST under load, on one in-process server with the
// embedded model: the same batcher, admission control and model serve both.
//
// It runs alternating rounds (REST JSON, REST binary, gRPC, repeated -rounds
// times) of a closed loop at -concurrency clients for -duration each, every
// request classifying -images UINT8 images, and reports each protocol's
// median throughput and latency percentiles. It exits 1 when gRPC's
// throughput differs from REST JSON's by more than -max-diff.
//
// Usage, from the repository root:
//
//	go run ./bench/grpcrest -concurrency 16 -duration 5s -rounds 3
//
// All traffic stays on loopback (127.0.0.1).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fashion-classifier/fashion/bench/load/loadgen"
	"github.com/fashion-classifier/fashion/internal/modelfile"
	"github.com/fashion-classifier/fashion/internal/oipgrpc/pb"
	"github.com/fashion-classifier/fashion/internal/server"
)

func main() {
	conc := flag.Int("concurrency", 16, "concurrent clients")
	dur := flag.Duration("duration", 5*time.Second, "length of one round per protocol")
	rounds := flag.Int("rounds", 3, "alternating rounds per protocol")
	images := flag.Int("images", 1, "images per request")
	maxDiff := flag.Float64("max-diff", 0.2, "largest relative throughput difference of gRPC against REST JSON that passes")
	flag.Parse()
	if err := run(*conc, *dur, *rounds, *images, *maxDiff); err != nil {
		fmt.Fprintln(os.Stderr, "grpcrest:", err)
		os.Exit(1)
	}
}

// protocol sends one inference request.
type protocol struct {
	name string
	send func(ctx context.Context) error
}

func run(conc int, dur time.Duration, rounds, images int, maxDiff float64) error {
	if conc < 1 || rounds < 1 || images < 1 || images > 256 || dur <= 0 {
		return fmt.Errorf("want -concurrency, -rounds ≥ 1, -images 1..256, -duration > 0")
	}
	clf, err := modelfile.Embedded()
	if err != nil {
		return err
	}
	s, err := server.New(server.Config{WarmUp: true, MaxInFlight: 4 * conc, Queue: 8 * conc * images}, clf, nil)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeWithGRPC(ctx, hl, gl) }()
	defer func() { cancel(); <-done }()

	// The same images for every protocol: a mid-grey square on black.
	pix := make([]byte, images*modelfile.Pixels)
	for i := range pix {
		if x, y := i%28, i/28%28; x > 4 && x < 24 && y > 4 && y < 24 {
			pix[i] = 160
		}
	}
	ints := make([]int, len(pix))
	for i, p := range pix {
		ints[i] = int(p)
	}
	shape := []int{images, 28, 28}
	jsonBody, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "input_uint8", "datatype": "UINT8", "shape": shape, "data": ints}}})
	binHeader, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "input_uint8", "datatype": "UINT8", "shape": shape, "parameters": map[string]any{"binary_data_size": len(pix)}}}})
	binBody := append(binHeader, pix...)
	url := "http://" + hl.Addr().String() + "/v2/models/fashion-mnist/infer"
	client := loadgen.NewClient(conc)
	post := func(ctx context.Context, body []byte, hdr int) error {
		req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if hdr > 0 {
			req.Header.Set("Inference-Header-Content-Length", fmt.Sprint(hdr))
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	conn, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	gc := pb.NewGRPCInferenceServiceClient(conn)
	greq := &pb.ModelInferRequest{ModelName: "fashion-mnist", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "input_uint8", Datatype: "UINT8", Shape: []int64{int64(images), 28, 28}}}, RawInputContents: [][]byte{pix}}
	protos := []protocol{
		{"REST JSON", func(ctx context.Context) error { return post(ctx, jsonBody, 0) }},
		{"REST binary", func(ctx context.Context) error { return post(ctx, binBody, len(binHeader)) }},
		{"gRPC raw", func(ctx context.Context) error { _, err := gc.ModelInfer(ctx, greq); return err }},
	}
	for _, p := range protos { // warm the connections
		if err := p.send(context.Background()); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}

	rps := make([][]float64, len(protos))
	lat := make([][]time.Duration, len(protos))
	for range rounds {
		for i, p := range protos {
			r, l, err := closedLoop(p, conc, dur)
			if err != nil {
				return err
			}
			rps[i] = append(rps[i], r)
			lat[i] = append(lat[i], l...)
		}
	}
	fmt.Printf("machine: %s\n%d clients, %d image(s) per request, %d rounds of %v per protocol, alternating\n\n", loadgen.Machine(), conc, images, rounds, dur)
	fmt.Println("| protocol | requests/s (median) | p50 ms | p99 ms |")
	fmt.Println("|---|---|---|---|")
	med := make([]float64, len(protos))
	for i, p := range protos {
		st := loadgen.Summarize(lat[i])
		med[i] = loadgen.Median(rps[i])
		fmt.Printf("| %s | %.0f | %.2f | %.2f |\n", p.name, med[i], loadgen.Ms(st.P50), loadgen.Ms(st.P99))
	}
	diff := med[2]/med[0] - 1
	fmt.Printf("\ngRPC vs REST JSON throughput: %+.1f%% (allowed ±%.0f%%)\n", 100*diff, 100*maxDiff)
	if math.Abs(diff) > maxDiff {
		return fmt.Errorf("gRPC and REST differ by %+.1f%%, more than %.0f%%", 100*diff, 100*maxDiff)
	}
	return nil
}

// closedLoop runs conc clients sending p's request back to back for d and
// returns the throughput and every latency; any failed request is an error.
func closedLoop(p protocol, conc int, d time.Duration) (float64, []time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu    sync.Mutex
		lat   []time.Duration
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				t := time.Now()
				err := p.send(context.Background())
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s: %w", p.name, err)
					}
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(len(lat)) / time.Since(start).Seconds(), lat, first
}
