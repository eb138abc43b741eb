// Package netguard keeps unauthenticated clients from holding a vdc
// listener's connections: a listener wrapper with a per-address limit on
// connections that have not authenticated, and the HTTP server settings
// (header, idle and request-body inactivity timeouts) that close
// connections which send nothing. The management server, the host agent
// and the debug endpoint all serve through it.
package netguard
