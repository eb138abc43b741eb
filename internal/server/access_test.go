package server

import (
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/authz"
)

// Every API call says what it needs, from one table: a privilege of the
// catalogue on an object the path names (or the root, or a filtered
// list), or is explicitly open to any caller or authenticated otherwise.
func TestEveryRouteNeedsAPrivilege(t *testing.T) {
	s := &Server{}
	seen := map[string]bool{}
	for _, r := range s.apiRoutes() {
		key := r.method + " " + r.path
		seen[key] = true
		a, ok := routeAccess[key]
		if !ok {
			t.Errorf("%s: no entry in routeAccess", key)
			continue
		}
		switch a.on {
		case onPublic:
			if !r.public {
				t.Errorf("%s: public in routeAccess, but the route checks bearer tokens", key)
			}
			continue
		case onAny:
			continue
		case onRoot, onList, onBody, api.KindVM, api.KindHost, api.KindTask, api.KindImage,
			api.KindDatacenter, api.KindCluster, api.KindDatastore, api.KindPortGroup, api.KindSwitch, api.KindFolder:
		default:
			t.Errorf("%s: checked on %q, which is no object", key, a.on)
		}
		if r.public {
			t.Errorf("%s: the route is public but routeAccess asks for %s", key, a.priv)
		}
		if !authz.Known(a.priv) {
			t.Errorf("%s: privilege %q is not in the catalogue", key, a.priv)
		}
		for action, p := range a.byAction {
			if !authz.Known(p) {
				t.Errorf("%s: action %s needs %q, not in the catalogue", key, action, p)
			}
		}
	}
	for key := range routeAccess {
		if !seen[key] {
			t.Errorf("routeAccess has %s, which is no route", key)
		}
	}
}
