// Package api holds the types of the vdc REST API (/api/v1): the inventory
// objects, tasks, events, request bodies and errors. The server, the Go client
// and the CLI all share them; nothing here does I/O.
package api
