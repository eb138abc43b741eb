package api

import "time"

// Users and groups local to vdc, and their sessions.
const (
	KindUser  = "users"
	KindGroup = "groups"
)

// User is a person (or a script) who logs in. Its password is stored
// apart, hashed (argon2id), and never shown.
type User struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     UserSpec   `json:"spec"`
}

type UserSpec struct {
	FullName    string `json:"fullName,omitempty"`
	Description string `json:"description,omitempty"`
	// Disabled users cannot log in, and their sessions and tokens stop
	// working at once.
	Disabled bool `json:"disabled,omitempty"`
}

func (o *User) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *User) Kind() string         { return KindUser }

// UserCreateRequest is the body of POST /api/v1/users.
type UserCreateRequest struct {
	Name        string `json:"name"`
	Password    string `json:"password"`
	FullName    string `json:"fullName,omitempty"`
	Description string `json:"description,omitempty"`
}

// UserUpdateRequest is the body of PATCH /api/v1/users/{name}.
type UserUpdateRequest struct {
	FullName    *string `json:"fullName,omitempty"`
	Description *string `json:"description,omitempty"`
	Disabled    *bool   `json:"disabled,omitempty"`
	// Password sets a new password; the user's sessions end.
	Password *string `json:"password,omitempty"`
}

// Group is a set of users that permissions can name together.
type Group struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     GroupSpec  `json:"spec"`
}

type GroupSpec struct {
	Members     []string `json:"members"` // user names, sorted
	Description string   `json:"description,omitempty"`
}

func (o *Group) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *Group) Kind() string         { return KindGroup }

// GroupCreateRequest is the body of POST /api/v1/groups.
type GroupCreateRequest struct {
	Name        string   `json:"name"`
	Members     []string `json:"members,omitempty"`
	Description string   `json:"description,omitempty"`
}

// GroupUpdateRequest is the body of PATCH /api/v1/groups/{name}.
type GroupUpdateRequest struct {
	Add         []string `json:"add,omitempty"`
	Remove      []string `json:"remove,omitempty"`
	Description *string  `json:"description,omitempty"`
}

// LoginRequest is the body of POST /api/v1/sessions.
type LoginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Session answers a login: its Token (shown this once) works as a bearer
// token until Expires, which moves on while it is used, up to MaxExpires.
type Session struct {
	ID         string    `json:"id"`
	User       string    `json:"user"`
	Token      string    `json:"token,omitempty"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	MaxExpires time.Time `json:"maxExpires"`
}
