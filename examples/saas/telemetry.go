package main

import (
	"context"
	"errors"
	"io"
	"time"

	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tenancykit/tenancy/tenantotel"
)

// stdoutTelemetry returns a Telemetry that writes its spans and, every
// interval, its metrics to w as JSON (OTEL_STDOUT=1), and the func that
// flushes and stops it. In production, use OTLP exporters instead.
func stdoutTelemetry(w io.Writer, interval time.Duration) (*tenantotel.Telemetry, func(context.Context) error, error) {
	se, err := stdouttrace.New(stdouttrace.WithWriter(w))
	if err != nil {
		return nil, nil, err
	}
	me, err := stdoutmetric.New(stdoutmetric.WithWriter(w))
	if err != nil {
		return nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(se))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me, sdkmetric.WithInterval(interval))))
	shutdown := func(ctx context.Context) error { return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx)) }
	tel, err := tenantotel.New(tenantotel.Config{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		_ = shutdown(context.Background())
		return nil, nil, err
	}
	return tel, shutdown, nil
}
