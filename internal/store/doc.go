// Package store keeps vdc's objects in etcd: a typed store with optimistic
// concurrency (every write compares the revision it read), unique names per
// kind, multi-object transactions, and a Cache fed by an etcd watch that
// answers reads and tells controllers what changed.
//
// Key layout, all under /vdc/ so one watch sees every revision:
//
//	/vdc/obj/<kind>/<id>    the object, JSON
//	/vdc/name/<kind>/<name> the ID of the object with that name
//	/vdc/sys/...            server-private records (tokens, CA, leader)
package store
