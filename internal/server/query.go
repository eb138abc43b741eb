package server

import (
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
)

// checkQuery refuses query parameters the route does not take, ones given
// twice, and values outside a parameter's fixed set, before the handler
// runs. What each value refers to (a host, a cluster) the handler checks.
func checkQuery(rt route, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := rt.checkQuery(r.URL.RawQuery); err != nil {
			fail(w, err)
			return
		}
		next(w, r)
	}
}

func (rt route) checkQuery(raw string) error {
	if raw == "" {
		return nil
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return api.Errorf(api.ErrInvalid, "malformed query string %q: %v", raw, err)
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		i := slices.IndexFunc(rt.query, func(p param) bool { return p.name == name })
		if i < 0 {
			return api.Errorf(api.ErrInvalid, "unknown query parameter %q: %s %s takes %s", name, rt.method, rt.path, rt.queryNames())
		}
		p, vs := rt.query[i], q[name]
		if len(vs) > 1 {
			return api.Errorf(api.ErrInvalid, "query parameter %s is given %d times; give it once", name, len(vs))
		}
		if p.values == nil || vs[0] == "" {
			continue
		}
		items := []string{vs[0]}
		if p.list {
			items = strings.Split(vs[0], ",")
		}
		for _, v := range items {
			if !slices.Contains(p.values, v) && !(p.list && v == "") {
				what := "must be one of"
				if p.list {
					what = "takes a comma-separated list of"
				}
				return api.Errorf(api.ErrInvalid, "query parameter %s %s %s; got %q", name, what, strings.Join(p.values, ", "), v)
			}
		}
	}
	return nil
}

func (rt route) queryNames() string {
	if len(rt.query) == 0 {
		return "no query parameters"
	}
	names := make([]string, len(rt.query))
	for i, p := range rt.query {
		names[i] = p.name
	}
	return "only " + strings.Join(names, ", ")
}
