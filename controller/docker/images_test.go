package docker

import (
	"testing"
	"time"

	"github.com/ars-project/ars/controller/driver"
	"github.com/ars-project/ars/fsm"
)

// TestLabImages runs every lab image that `make images` built through the
// driver (power-on, attach) and checks that its server answers
// www.lab.internal. A 192.0.2.10 on the service address. Images that are
// not built are skipped: `make test` does not build them (it takes
// minutes); run `make images` first to include them.
func TestLabImages(t *testing.T) {
	e := testEnv(t)
	d, cnt := newDriver(t, e, "", nil)
	ctx := ctxT(t)
	for _, impl := range []string{"bind9", "unbound", "knot-resolver", "pdns-recursor"} {
		t.Run(impl, func(t *testing.T) {
			image := "ars-lab/" + impl + ":latest"
			if _, err := e.cli.ImageInspect(ctx, image); err != nil {
				t.Skipf("%s is not built (run `make images`): %v", image, err)
			}
			r := e.replica(t, "")
			r.Impl, r.Image = impl, image
			r.Container = &fsm.ContainerSpec{Network: e.svcNet, MemoryMB: 256}
			mustOp(t, cnt, "power-on", -1, func() error { return d.PowerOn(ctx, r) })
			mustOp(t, cnt, "attach", attachCalls(d), func() error { return d.Attach(ctx, r, driver.ServiceAddr(e.svcAddr)) })
			took := waitAnswer(t, e.svcAddr, "192.0.2.10", 20*time.Second)
			t.Logf("%s answered %s after attach", impl, took)
			mustOp(t, cnt, "detach", 1, func() error { return d.Detach(ctx, r) })
			mustOp(t, cnt, "power-off", 1, func() error { return d.PowerOff(ctx, r) })
		})
	}
}
