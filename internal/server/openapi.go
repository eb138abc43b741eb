package server

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/server/idempotency"
	"github.com/vdc-project/vdc/internal/version"
)

// GET /api/v1/openapi.json
func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) error {
	s.openapiOnce.Do(func() { s.openapiDoc, _ = json.MarshalIndent(openAPI(s.apiRoutes()), "", "  ") })
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.openapiDoc)
	return nil
}

type openapiCache struct {
	openapiOnce sync.Once
	openapiDoc  []byte
}

var pathParam = regexp.MustCompile(`\{(\w+)\}`)

// openAPI builds an OpenAPI 3.0 document from the route table; schemas
// come from the Go types by reflection, named after them.
func openAPI(routes []route) map[string]any {
	g := &schemaGen{defs: map[string]any{}}
	paths := map[string]map[string]any{}
	for _, r := range routes {
		op := map[string]any{"summary": r.summary, "operationId": strings.ToLower(r.method) + opID(r.path)}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(r.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"},
				"description": "name or ID"})
		}
		for _, q := range r.query {
			schema := map[string]any{"type": "string"}
			if q.values != nil && !q.list {
				schema["enum"] = q.values
			}
			doc := q.doc
			if q.list {
				doc += " (any of: " + strings.Join(q.values, ", ") + ")"
			}
			params = append(params, map[string]any{"name": q.name, "in": "query", "schema": schema, "description": doc})
		}
		if r.idempotent {
			params = append(params, map[string]any{"name": idempotency.Header, "in": "header",
				"schema": map[string]any{"type": "string", "maxLength": idempotency.MaxKey},
				"description": "a fresh random value (a UUID) per request: the same request sent again with it, within 24 hours, " +
					"returns the task the first one recorded instead of doing it twice; the key sent with a different request is refused with 422"})
		}
		if params != nil {
			op["parameters"] = params
		}
		if r.body != nil {
			op["requestBody"] = map[string]any{"required": true,
				"content": map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(r.body))}}}
		}
		status := r.status
		if status == 0 {
			status = http.StatusOK
		}
		ctype := "application/json"
		if r.stream {
			ctype = "text/event-stream"
		}
		op["responses"] = map[string]any{
			strconv.Itoa(status): map[string]any{"description": http.StatusText(status),
				"content": map[string]any{ctype: map[string]any{"schema": g.reply(r.reply)}}},
			"default": map[string]any{"description": "error",
				"content": map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(api.ErrorBody{}))}}},
		}
		if r.public {
			op["security"] = []any{}
		}
		if paths[r.path] == nil {
			paths[r.path] = map[string]any{}
		}
		paths[r.path][strings.ToLower(r.method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{"title": "vdc API", "version": version.String(),
			"description": "State-changing calls return the Task doing the change (202 while it runs, 200 when the request finished it). " +
				"Those that record a task take an Idempotency-Key header: a client that lost the answer sends the request again with the same key " +
				"and gets the task the first one recorded (the same status a first call would get for it now); the key reused for another request is 422. " +
				"Unknown query parameters, and filter values outside their allowed set, are 400. " +
				"Errors are {\"error\": {\"code\", \"message\"}}."},
		"paths":    paths,
		"security": []any{map[string]any{"bearer": []any{}}},
		"components": map[string]any{
			"schemas":         g.defs,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
		},
	}
}

func opID(path string) string {
	var b strings.Builder
	for _, part := range strings.Split(strings.TrimPrefix(path, "/api/v1/"), "/") {
		part = strings.Trim(part, "{}")
		part = strings.ReplaceAll(part, "-", "")
		part = strings.ReplaceAll(part, ".", "")
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

type schemaGen struct{ defs map[string]any }

// reply describes an answer: a type, or a list of one.
func (g *schemaGen) reply(v any) map[string]any {
	if l, ok := v.(listDoc); ok {
		return map[string]any{"type": "object", "properties": map[string]any{
			"items": map[string]any{"type": "array", "items": g.schema(reflect.TypeOf(l.item))}, "revision": map[string]any{"type": "integer"}}}
	}
	return g.schema(reflect.TypeOf(v))
}

var (
	sizeType = reflect.TypeOf(api.Size(0))
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

// schema describes a Go type; named structs become components.
func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch t {
	case sizeType:
		return map[string]any{"type": "integer", "format": "int64", "description": `bytes; requests also accept strings like "10GiB"`}
	case timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case rawType:
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint64, reflect.Uint32:
		return map[string]any{"type": "integer"}
	case reflect.Float64, reflect.Float32:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		name := t.Name()
		if name == "" || t.PkgPath() != reflect.TypeOf(api.VM{}).PkgPath() {
			return g.object(t)
		}
		ref := map[string]any{"$ref": "#/components/schemas/" + name}
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = nil // break cycles
			g.defs[name] = g.object(t)
		}
		return ref
	}
	return map[string]any{}
}

func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
	}
	return map[string]any{"type": "object", "properties": props}
}
