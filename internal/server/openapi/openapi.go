// Package openapi describes the API as an OpenAPI 3.0 document, from the
// server's route table: schemas come from the Go types by reflection.
package openapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/server/idempotency"
	"github.com/vdc-project/vdc/internal/version"
)

// Route is one call of the API as the document shows it.
type Route struct {
	Method, Path, Summary string
	Body, Reply           any // the request body's and the answer's types (zero values)
	Status                int // success status (default 200)
	Query                 []Param
	Public                bool // authenticated otherwise than by bearer token
	Stream                bool // text/event-stream
	Idempotent            bool // takes an Idempotency-Key header
	// Privilege is what the caller needs (authz's names) and On where:
	// shown as the operation's x-vdc-privilege and x-vdc-privilege-on.
	Privilege, On string
	// ByAction are the privileges of the body's actions, when they differ.
	ByAction map[string]string
}

// ListOf is the Reply of a list call: api.List of Item's type.
type ListOf struct{ Item any }

// Param is a query parameter.
type Param struct {
	Name, Doc string
	Values    []string // the allowed values, when they are a fixed set
	List      bool     // a comma-separated list of values
}

var pathParam = regexp.MustCompile(`\{(\w+)\}`)

// Document builds an OpenAPI 3.0 document from the route table; schemas
// come from the Go types by reflection, named after them.
func Document(routes []Route) map[string]any {
	g := &schemaGen{defs: map[string]any{}}
	paths := map[string]map[string]any{}
	for _, r := range routes {
		op := map[string]any{"summary": r.Summary, "operationId": strings.ToLower(r.Method) + opID(r.Path)}
		if r.Privilege != "" {
			op["x-vdc-privilege"] = r.Privilege
		}
		if r.On != "" {
			op["x-vdc-privilege-on"] = r.On
		}
		if r.ByAction != nil {
			op["x-vdc-privilege-by-action"] = r.ByAction
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(r.Path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"},
				"description": "name or ID"})
		}
		for _, q := range r.Query {
			schema := map[string]any{"type": "string"}
			if q.Values != nil && !q.List {
				schema["enum"] = q.Values
			}
			doc := q.Doc
			if q.List {
				doc += " (any of: " + strings.Join(q.Values, ", ") + ")"
			}
			params = append(params, map[string]any{"name": q.Name, "in": "query", "schema": schema, "description": doc})
		}
		if r.Idempotent {
			params = append(params, map[string]any{"name": idempotency.Header, "in": "header",
				"schema": map[string]any{"type": "string", "maxLength": idempotency.MaxKey},
				"description": "a fresh random value (a UUID) per request: the same request sent again with it, within 24 hours, " +
					"returns the task the first one recorded instead of doing it twice; the key sent with a different request is refused with 422"})
		}
		if params != nil {
			op["parameters"] = params
		}
		if r.Body != nil {
			op["requestBody"] = map[string]any{"required": true,
				"content": map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(r.Body))}}}
		}
		status := r.Status
		if status == 0 {
			status = http.StatusOK
		}
		ctype := "application/json"
		if r.Stream {
			ctype = "text/event-stream"
		}
		op["responses"] = map[string]any{
			strconv.Itoa(status): map[string]any{"description": http.StatusText(status),
				"content": map[string]any{ctype: map[string]any{"schema": g.reply(r.Reply)}}},
			"default": map[string]any{"description": "error",
				"content": map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(api.ErrorBody{}))}}},
		}
		if r.Public {
			op["security"] = []any{}
		}
		if paths[r.Path] == nil {
			paths[r.Path] = map[string]any{}
		}
		paths[r.Path][strings.ToLower(r.Method)] = op
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
	if l, ok := v.(ListOf); ok {
		return map[string]any{"type": "object", "properties": map[string]any{
			"items": map[string]any{"type": "array", "items": g.schema(reflect.TypeOf(l.Item))}, "revision": map[string]any{"type": "integer"}}}
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
