package api

import "time"

// JoinTokenRequest is the body of POST /api/v1/join-tokens.
type JoinTokenRequest struct {
	// Uses is how many hosts may join with the token (default 1).
	Uses int `json:"uses,omitempty"`
	// TTLSeconds is how long it is valid (default 24h).
	TTLSeconds int `json:"ttlSeconds,omitempty"`
	// Cluster the joining hosts go into (default: the only cluster).
	Cluster string `json:"cluster,omitempty"`
}

// JoinToken is a secret a new host presents once to join. It also carries
// the fingerprint of the server's CA so the host can trust the server
// before it has any certificate.
type JoinToken struct {
	Token   string    `json:"token"`
	Uses    int       `json:"uses"`
	Expires time.Time `json:"expires"`
	Cluster Ref       `json:"cluster"`
}

// HostReplaceRequest is the body of POST /api/v1/hosts/{name}/replace.
type HostReplaceRequest struct {
	// TTLSeconds is how long the join token is valid (default 1h).
	TTLSeconds int `json:"ttlSeconds,omitempty"`
}

// HostReplaceResponse answers a host replace: the host's certificate is
// revoked, and Token (valid once, for joining as this host only) gives the
// machine that joins with it a new certificate for the same host ID.
type HostReplaceResponse struct {
	Task  *Task     `json:"task"`
	Token JoinToken `json:"token"`
	Host  Ref       `json:"host"`
}

// Version is the body of GET /api/v1/version.
type Version struct {
	Version  string `json:"version"`
	Server   string `json:"server"`
	Leader   string `json:"leader,omitempty"`
	IsLeader bool   `json:"isLeader"`
}

// TokenCreateRequest is the body of POST /api/v1/tokens: an API token for
// a user (the CLI's config holds one).
type TokenCreateRequest struct {
	// User is who the token acts as (default: the caller), with the
	// user's permissions.
	User        string `json:"user,omitempty"`
	Description string `json:"description,omitempty"`
	// ExpiresSeconds ends the token that long after its creation (0:
	// never).
	ExpiresSeconds int64 `json:"expiresSeconds,omitempty"`
	// Role, when set, narrows the token to that role's privileges: it can
	// do what its user may and the role allows, no more.
	Role string `json:"role,omitempty"`
}

// Token is an API token. Its secret is shown once, in the answer to its
// creation; the server keeps only a hash. ID names it for deletion.
type Token struct {
	ID          string    `json:"id"`
	User        string    `json:"user"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires,omitzero"`
	// Role narrows the token to a role's privileges ("": none).
	Role string `json:"role,omitempty"`
	// Session marks a login's token (vdc login).
	Session bool `json:"session,omitempty"`
	// Token is the secret to send as "Authorization: Bearer TOKEN",
	// in the answer to POST /api/v1/tokens only.
	Token string `json:"token,omitempty"`
}
