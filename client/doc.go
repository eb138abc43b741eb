// Package client is the Go client of the vdc REST API. The CLI and the
// end-to-end tests talk to the server only through it.
package client
