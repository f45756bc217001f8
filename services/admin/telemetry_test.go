package admin

import (
	"context"
	"net/http"
	"testing"

	"github.com/heraldmq/herald/pkg/telemetry"
	"github.com/heraldmq/herald/pkg/telemetry/telemetrytest"
	adminv1 "github.com/heraldmq/herald/proto/herald/admin/v1"
	"go.opentelemetry.io/otel/attribute"
)

// TestAdminTelemetry ensures gRPC calls (through the wrapped handler) and
// REST calls are both timed, labelled by method and result, and that gRPC
// still works through the wrapper.
func TestAdminTelemetry(t *testing.T) {
	rec := telemetrytest.New(t, "herald-admin", "a")
	f := newFixture(t, Config{}, WithTelemetry(rec.Providers()))
	c := f.grpc(t, operatorToken)
	if _, err := c.tenants.ListTenants(context.Background(), &adminv1.ListTenantsRequest{}); err != nil {
		t.Fatalf("gRPC through the telemetry wrapper: %v", err)
	}
	if _, err := c.tenants.GetTenant(context.Background(), &adminv1.GetTenantRequest{Id: "nobody"}); err == nil {
		t.Fatal("GetTenant of a missing tenant succeeded")
	}
	if code, _ := f.do(t, http.MethodGet, "/v1/tenants", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("REST without token: %d", code)
	}
	for _, tc := range []struct{ op, result string }{
		{"/herald.admin.v1.TenantService/ListTenants", "OK"},
		{"/herald.admin.v1.TenantService/GetTenant", "NotFound"},
		{"REST GET", "4xx"},
	} {
		if n := rec.HistogramCount(t, telemetry.MetricAdminRequestDuration,
			attribute.String(telemetry.LabelOperation, tc.op), attribute.String(telemetry.LabelResult, tc.result)); n != 1 {
			t.Errorf("%s %s: %d recordings, want 1", tc.op, tc.result, n)
		}
	}
}
