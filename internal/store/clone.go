package store

import "github.com/vdc-project/vdc/api"

// Clone deep-copies an object so that a cached one can be changed and
// written back.
func Clone[T api.Object](obj T) T { return api.DeepCopy(obj) }
