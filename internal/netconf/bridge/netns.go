package bridge

import (
	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/internal/netconf/tap"
)

// createTap makes a persistent tap named name in ns (see tap.Create):
// setup runs while the new tap is held only by its descriptor, so an
// agent killed before the end leaves no tap.
func createTap(ns netns.NsHandle, name string, setup func() error) error {
	return tap.Create(ns, name, setup)
}
