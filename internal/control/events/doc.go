// Package events says what the inventory's changes mean to a user and
// keeps them for the /api/v1/events stream: Of maps one store change to
// api.Events (task progress, objects created and deleted, VM power, host
// connection and HA, datastore space alarms); Log, a cache subscriber,
// numbers them, keeps the recent ones so a client can resume after the
// last ID it saw, and fans them out to subscribers, dropping one too slow
// to keep up rather than holding the others back.
//
// events is on layer 5 of internal/control: it reads the store's changes
// and calls storage's pure DatastoreEvents; nothing in internal/control
// imports it. The SSE handler that serves a Log is internal/server's.
package events
