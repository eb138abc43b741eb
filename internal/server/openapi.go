package server

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/vdc-project/vdc/internal/server/openapi"
)

// GET /api/v1/openapi.json
func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) error {
	s.openapiOnce.Do(func() { s.openapiDoc, _ = json.MarshalIndent(openapi.Document(describe(s.apiRoutes())), "", "  ") })
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.openapiDoc)
	return nil
}

type openapiCache struct {
	openapiOnce sync.Once
	openapiDoc  []byte
}

// describe turns the route table into the document's routes.
func describe(routes []route) []openapi.Route {
	out := make([]openapi.Route, 0, len(routes))
	for _, r := range routes {
		d := openapi.Route{Method: r.method, Path: r.path, Summary: r.summary, Body: r.body, Reply: r.reply, Status: r.status,
			Public: r.public, Stream: r.stream, Idempotent: r.idempotent}
		a := routeAccess[r.method+" "+r.path]
		d.Privilege, d.On = string(a.priv), a.on
		for action, p := range a.byAction {
			if d.ByAction == nil {
				d.ByAction = map[string]string{}
			}
			d.ByAction[action] = string(p)
		}
		for _, q := range r.query {
			d.Query = append(d.Query, openapi.Param{Name: q.name, Doc: q.doc, Values: q.values, List: q.list})
		}
		out = append(out, d)
	}
	return out
}
