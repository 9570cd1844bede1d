package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serverMetrics holds the server's Prometheus collectors. They live on a
// registry of their own, so two servers in one process (as in tests) never
// collide and nothing depends on the global default registry.
type serverMetrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec   // by route and status code
	latency         *prometheus.HistogramVec // by route
	batchSize       prometheus.Histogram
	inference       prometheus.Histogram
	inferenceErrors prometheus.Counter
	rejected        prometheus.Counter // queue full
	// admissionRejected counts requests refused by an admission stage.
	admissionRejected *prometheus.CounterVec // by stage
	cancelled         prometheus.Counter     // abandoned before inference
	images            prometheus.Counter
	fetchFailures     *prometheus.CounterVec // by reason
	// modelLatency and modelQueue are per model version (and protocol);
	// a version's series are deleted when it closes, so the label set stays
	// bounded by the versions loaded.
	modelLatency *prometheus.HistogramVec
	modelQueue   *prometheus.HistogramVec
}

func newServerMetrics() *serverMetrics {
	m := &serverMetrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fashion_http_requests_total",
			Help: "HTTP requests answered, by route pattern (method and path, or \"unmatched\") and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fashion_http_request_duration_seconds",
			Help:    "Time from request start to handler return, by route pattern.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10},
		}, []string{"route"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fashion_batch_size_images",
			Help:    "Images per forward pass formed by the micro-batcher.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fashion_inference_duration_seconds",
			Help:    "Time of one batched forward pass.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1},
		}),
		inferenceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fashion_inference_errors_total",
			Help: "Forward passes that failed.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fashion_queue_rejected_total",
			Help: "Requests refused with 503 because the inference queue was full.",
		}),
		admissionRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fashion_admission_rejected_total",
			Help: "Requests (or fetches) refused with 503 by admission, by stage: body_budget (-body-budget bytes of bodies and fetched images in use), fetches (-max-fetches in progress), in_flight (-max-inflight inference requests).",
		}, []string{"stage"}),
		cancelled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fashion_queue_cancelled_total",
			Help: "Queued requests dropped before inference because the client went away.",
		}),
		images: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fashion_images_classified_total",
			Help: "Images classified successfully, over every endpoint.",
		}),
		fetchFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fashion_fetch_failures_total",
			Help: "URL fetches that failed or were refused, by reason.",
		}, []string{"reason"}),
		modelLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fashion_model_request_duration_seconds",
			Help:    "Time of inference requests from admission to answer, by model, version and protocol (rest or grpc).",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10},
		}, []string{"model", "version", "protocol"}),
		modelQueue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fashion_model_queue_duration_seconds",
			Help:    "Time inference requests' images waited for a forward pass, by model and version.",
			Buckets: []float64{.0001, .0002, .0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1},
		}, []string{"model", "version"}),
	}
	m.reg.MustRegister(m.modelLatency, m.modelQueue, m.requests, m.latency, m.batchSize, m.inference, m.inferenceErrors,
		m.rejected, m.admissionRejected, m.cancelled, m.images, m.fetchFailures,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// registerQueue exports the batchers' queue lengths, summed over the loaded
// model versions by totals, as gauges read at scrape time, so the hot path
// does no bookkeeping for them.
func (m *serverMetrics) registerQueue(totals func() (queued, pending int64)) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fashion_queue_depth",
		Help: "Images waiting for the micro-batchers.",
	}, func() float64 { q, _ := totals(); return float64(q) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fashion_queue_pending_images",
		Help: "Images announced by requests still being decoded.",
	}, func() float64 { _, p := totals(); return float64(p) }))
}

// observeModel records one inference request on a model version.
func (m *serverMetrics) observeModel(model, version, protocol string, latency, queue time.Duration) {
	m.modelLatency.WithLabelValues(model, version, protocol).Observe(latency.Seconds())
	m.modelQueue.WithLabelValues(model, version).Observe(queue.Seconds())
}

// forgetModel deletes a closed model version's series.
func (m *serverMetrics) forgetModel(model, version string) {
	labels := prometheus.Labels{"model": model, "version": version}
	m.modelLatency.DeletePartialMatch(labels)
	m.modelQueue.DeletePartialMatch(labels)
}

// registerAdmission exports the admission stages' occupancy and the
// connection limiter's work as metrics read at scrape time.
func (m *serverMetrics) registerAdmission(s *Server) {
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	gauge("fashion_inflight_requests", "Inference requests holding a slot (decoding or waiting for the model).",
		func() float64 { return float64(s.inference.inFlight.Load()) })
	gauge("fashion_fetches_in_progress", "URL fetches in progress.",
		func() float64 { return float64(s.fetches.inFlight.Load()) })
	gauge("fashion_body_budget_held_bytes", "Bytes of request bodies and fetched images held, of the -body-budget.",
		func() float64 { return float64(s.budget.held.Load()) })
	gauge("fashion_body_budget_bytes", "The byte budget for request bodies and fetched images (-body-budget).",
		func() float64 { return float64(s.budget.size) })
	gauge("fashion_open_connections", "Client connections open.",
		func() float64 { return float64(s.conns.count()) })
	counter("fashion_connections_evicted_total", "Connections without a request in progress closed to make room under -max-conns.",
		func() float64 { return float64(s.conns.evicted.Load()) })
	counter("fashion_connections_refused_total", "New connections closed at once because -max-conns connections were all busy.",
		func() float64 { return float64(s.conns.refused.Load()) })
}

// observe records one answered request.
func (m *serverMetrics) observe(route string, code int, seconds float64) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(seconds)
}

// handler serves the registry in the Prometheus exposition format.
func (m *serverMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
