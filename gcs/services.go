package gcs

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/micro"
)

// The GCS's request subjects are NATS micro services, one per manager, so
// that `nats micro ls|info|stats` lists each manager with its endpoints,
// request counts, errors and latency. An endpoint's subject is the
// request subject (goray.gcs.<manager>.<verb>); its name is the verb.

// ServiceVersion is the version the GCS's micro services announce: that of
// the request/reply protocol in protos/gcs.proto.
const ServiceVersion = "1.0.0"

// serviceNames names the service of each subject's manager token.
var serviceNames = map[string]string{
	"node":    "goray-gcs-nodes",
	"job":     "goray-gcs-jobs",
	"func":    "goray-gcs-functions",
	"kv":      "goray-gcs-kv",
	"actor":   "goray-gcs-actors",
	"pg":      "goray-gcs-placement-groups",
	"task":    "goray-gcs-tasks",
	"cluster": "goray-gcs-cluster",
}

// serviceOf splits a request subject into its service and endpoint names.
func serviceOf(subject string) (service, endpoint string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != "goray" || parts[1] != "gcs" || serviceNames[parts[2]] == "" {
		return "", "", fmt.Errorf("%w: subject %s is not goray.gcs.<manager>.<verb>", ErrInternal, subject)
	}
	return serviceNames[parts[2]], parts[3], nil
}

// serveEndpoints starts the micro services and the plain subscriptions.
func (s *Server) serveEndpoints() error {
	services := map[string]micro.Service{}
	for _, ep := range s.endpoints() {
		if ep.serve == nil {
			sub, err := s.nc.Subscribe(ep.subject, s.track(ep.handler))
			if err != nil {
				return fmt.Errorf("%w: subscribe %s: %w", ErrUnavailable, ep.subject, err)
			}
			s.subs = append(s.subs, sub)
			continue
		}
		name, verb, err := serviceOf(ep.subject)
		if err != nil {
			return err
		}
		svc := services[name]
		if svc == nil {
			svc, err = micro.AddService(s.nc, micro.Config{Name: name, Version: ServiceVersion,
				Description: "goray GCS " + strings.TrimPrefix(name, "goray-gcs-") + " manager: protobuf requests and replies (docs/nats.md)",
				// One GCS serves a cluster; no queue group to share
				// requests with.
				QueueGroupDisabled: true})
			if err != nil {
				return fmt.Errorf("%w: micro service %s: %w", ErrUnavailable, name, err)
			}
			services[name] = svc
			s.services = append(s.services, svc)
		}
		serve := ep.serve
		handler := micro.HandlerFunc(func(r micro.Request) {
			s.handling.RLock()
			defer s.handling.RUnlock()
			serve(r)
		})
		if err := svc.AddEndpoint(verb, handler, micro.WithEndpointSubject(ep.subject)); err != nil {
			return fmt.Errorf("%w: endpoint %s: %w", ErrUnavailable, ep.subject, err)
		}
		s.serviceSubs++
	}
	return nil
}

// stopServices stops the micro services and waits until their drained
// subscriptions are gone, so that requests already queued are answered
// before the managers stop. micro keeps its subscriptions to itself, so
// the wait watches the connection's subscription count.
func (s *Server) stopServices() {
	if len(s.services) == 0 || s.nc == nil {
		return
	}
	before := s.nc.NumSubscriptions()
	for _, svc := range s.services {
		if err := svc.Stop(); err != nil {
			s.log.Debug().Err(err).Str("service", svc.Info().Name).Msg("stop micro service")
		}
	}
	// Each service also drains its discovery subscriptions ($SRV.PING,
	// .INFO and .STATS, each for all, by name and by id).
	want := before - s.serviceSubs - 9*len(s.services)
	deadline := time.Now().Add(drainTimeout)
	for s.nc.NumSubscriptions() > want && time.Now().Before(deadline) && !s.nc.IsClosed() {
		time.Sleep(5 * time.Millisecond)
	}
	s.services, s.serviceSubs = nil, 0
}
