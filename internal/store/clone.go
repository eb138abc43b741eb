package store

import (
	"encoding/json"

	"github.com/vdc-project/vdc/api"
)

// Clone deep-copies an object so that a cached one can be changed and
// written back.
func Clone[T api.Object](obj T) T {
	b, err := json.Marshal(obj)
	if err != nil {
		panic("clone " + obj.Kind() + ": " + err.Error())
	}
	out := factories[obj.Kind()]().(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic("clone " + obj.Kind() + ": " + err.Error())
	}
	out.GetMeta().Revision = obj.GetMeta().Revision
	return out
}
