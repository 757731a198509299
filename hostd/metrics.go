package hostd

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flashvisor/flashvisor/api"
)

// metrics lives in a private registry: no package-global state, and tests
// can build as many servers as they like.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	handler  http.Handler
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashvisor_api_requests_total",
			Help: "Management API requests by method and HTTP status code.",
		}, []string{"method", "code"}),
	}
	reg.MustRegister(
		m.requests,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flashvisor_host_uptime_seconds",
			Help: "Seconds since the host booted.",
		}, func() float64 {
			v, _ := uptime(s.o.Sys.Uptime)
			return v
		}),
		&serviceCollector{svc: s.o.Services, log: s},
	)
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "flashvisor_build_info",
		Help:        "Always 1; the version label is the image's Flashvisor version.",
		ConstLabels: prometheus.Labels{"version": s.version},
	})
	info.Set(1)
	reg.MustRegister(info)
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:      reg,
		ErrorHandling: promhttp.ContinueOnError,
	})
	return m
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.handler.ServeHTTP(w, r)
}

var (
	descInitUp = prometheus.NewDesc("flashvisor_init_up",
		"1 if init answered the service list at this scrape.", nil, nil)
	descServiceUp = prometheus.NewDesc("flashvisor_service_up",
		"1 if the supervised service is running.", []string{"service", "state"}, nil)
	descServiceRestarts = prometheus.NewDesc("flashvisor_service_restarts_total",
		"Times init restarted the service since boot.", []string{"service"}, nil)
)

// serviceCollector asks init for the services at each scrape, so the
// numbers are init's, never a stale copy.
type serviceCollector struct {
	svc ServiceControl
	log *Server
}

func (c *serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descInitUp
	ch <- descServiceUp
	ch <- descServiceRestarts
}

func (c *serviceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	svcs, err := c.svc.Services(ctx)
	if err != nil {
		c.log.log.Warn("metrics: init did not list services", "err", err)
		ch <- prometheus.MustNewConstMetric(descInitUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descInitUp, prometheus.GaugeValue, 1)
	for _, sv := range svcs {
		up := 0.0
		if sv.State == api.ServiceRunning {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descServiceUp, prometheus.GaugeValue, up, sv.Name, sv.State)
		ch <- prometheus.MustNewConstMetric(descServiceRestarts, prometheus.CounterValue, float64(sv.Restarts), sv.Name)
	}
}
