package eventlog_test

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

func spanTrace(ctx context.Context) string {
	return trace.SpanContextFromContext(ctx).TraceID().String()
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
