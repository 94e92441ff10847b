package gcs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goray/goray/protos"
)

// TestOversizedReplyAnswered: a listing too large for NATS's max_payload
// is answered with an error instead of leaving the caller to time out.
func TestOversizedReplyAnswered(t *testing.T) {
	t.Parallel()
	srv := runServer(t, Options{NodeTimeout: time.Minute})
	c := dial(t, srv.ClientURL())
	ctx := ctxT(t)
	// Two nodes of about 600 KB each: each registers, both do not list.
	// Few long names keep the test cheap.
	pad := strings.Repeat("r", maxResourceNameBytes-10)
	for _, h := range []string{"a", "b"} {
		n := newNode(h)
		n.Total = &protos.Resources{Amounts: map[string]float64{}}
		for i := range 2500 {
			n.Total.Amounts[fmt.Sprintf("%s_%08d", pad, i)] = 1
		}
		must(t, c.RegisterNode(ctx, n))
	}
	start := time.Now()
	_, err := c.ListNodes(ctx)
	if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("listing more than max_payload: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v", d)
	}
}
