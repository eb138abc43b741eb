package api

import "time"

// AuditRecord is one entry of the audit trail (GET /api/v1/audit): a
// state-changing request, accepted or refused; a failed login or a bad
// token; a console opened or an export read.
type AuditRecord struct {
	ID   string    `json:"id"` // time-ordered
	Time time.Time `json:"time"`
	// User is who asked ("" when no valid token came with it), From the
	// client's address.
	User string `json:"user,omitempty"`
	From string `json:"from"`
	// Action is the call: "POST /api/v1/vms/{name}/power".
	Action string `json:"action"`
	// Object is what it acted on (KIND:NAME), when the call names one.
	Object string `json:"object,omitempty"`
	// Privilege the call needed.
	Privilege string `json:"privilege,omitempty"`
	Status    int    `json:"status"`
	// Result is ok, refused (401, 403, 404 of an object not seen, 429) or
	// failed (any other error).
	Result  string `json:"result"`
	Message string `json:"message,omitempty"`
	Task    string `json:"task,omitempty"`
}

// Audit results.
const (
	AuditOK      = "ok"
	AuditRefused = "refused"
	AuditFailed  = "failed"
)
