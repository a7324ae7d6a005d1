package atlantislock

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"elock.dev/go/elock"
)

// Backend is Atlantis's lock storage (the lock methods of db.Database) in elock, through the
// server's Atlantis adapter (/api/atlantis/v1/...). Errors are Atlantis's own texts where
// Atlantis has one ("db transaction failed: lock already exists").
type Backend struct {
	c *elock.Client
	// Timeout bounds each call (default 30s).
	Timeout time.Duration
}

// New is a backend over the elock client c.
func New(c *elock.Client) *Backend { return &Backend{c: c, Timeout: 30 * time.Second} }

func (b *Backend) call(method, path string, query url.Values, body, out interface{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.Timeout)
	defer cancel()
	err := b.c.Call(ctx, method, path, query, body, out)
	var api *elock.APIError
	if errors.As(err, &api) && api.Code == "locked" {
		// Atlantis's own refusal text (the command lock's).
		return errors.New(api.Message)
	}
	return err
}

// keyRequest names a lock as Atlantis does: by project and workspace.
type keyRequest struct {
	Project   Project
	Workspace string
	PullNum   *int `json:",omitempty"`
}

// TryLock stores lock if its project and workspace are free: (true, lock). Otherwise
// (false, the lock there); never overwritten.
func (b *Backend) TryLock(lock ProjectLock) (bool, ProjectLock, error) {
	var answer struct {
		LockAcquired bool
		CurrLock     ProjectLock
		LockKey      string
	}
	if err := b.call(http.MethodPost, "/api/atlantis/v1/try-lock", nil, lock, &answer); err != nil {
		return false, ProjectLock{}, err
	}
	return answer.LockAcquired, answer.CurrLock, nil
}

// Unlock deletes the lock of project in workspace: the lock deleted, or nil when there was none.
func (b *Backend) Unlock(project Project, workspace string) (*ProjectLock, error) {
	var out *ProjectLock
	err := b.call(http.MethodPost, "/api/atlantis/v1/unlock", nil, keyRequest{Project: project, Workspace: workspace}, &out)
	return out, err
}

// UnlockIfOwnedByPull deletes the lock only when pull pullNum holds it.
func (b *Backend) UnlockIfOwnedByPull(project Project, workspace string, pullNum int) (*ProjectLock, error) {
	var out *ProjectLock
	req := keyRequest{Project: project, Workspace: workspace, PullNum: &pullNum}
	err := b.call(http.MethodPost, "/api/atlantis/v1/unlock-if-owned-by-pull", nil, req, &out)
	return out, err
}

// List returns every project lock (not the command lock).
func (b *Backend) List() ([]ProjectLock, error) {
	var byKey map[string]ProjectLock
	if err := b.call(http.MethodGet, "/api/atlantis/v1/locks", nil, nil, &byKey); err != nil {
		return nil, err
	}
	out := make([]ProjectLock, 0, len(byKey))
	for _, l := range byKey {
		out = append(out, l)
	}
	return out, nil
}

// GetLock returns the lock of project in workspace, or nil.
func (b *Backend) GetLock(project Project, workspace string) (*ProjectLock, error) {
	return b.GetLockByKey(Key(project, workspace))
}

// GetLockByKey returns the lock at Atlantis's key (also a pre-v0.40 three-part key), or nil.
func (b *Backend) GetLockByKey(key string) (*ProjectLock, error) {
	var out *ProjectLock
	err := b.call(http.MethodGet, "/api/atlantis/v1/lock", url.Values{"key": {key}}, nil, &out)
	return out, err
}

// UnlockByPull deletes every lock of pull pullNum of repoFullName (that repository only, not
// every repository whose name begins with it): the locks deleted.
func (b *Backend) UnlockByPull(repoFullName string, pullNum int) ([]ProjectLock, error) {
	var out []ProjectLock
	req := struct {
		RepoFullName string
		PullNum      int
	}{repoFullName, pullNum}
	err := b.call(http.MethodPost, "/api/atlantis/v1/unlock-by-pull", nil, req, &out)
	return out, err
}

// LockCommand takes the global lock of cmdName (apply); "db transaction failed: lock already
// exists" when it is held.
func (b *Backend) LockCommand(cmdName CommandName, lockTime time.Time) (*CommandLock, error) {
	var out CommandLock
	req := struct{ CommandName CommandName }{cmdName}
	if err := b.call(http.MethodPost, "/api/atlantis/v1/command-lock/lock", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UnlockCommand releases the global lock of cmdName; "db transaction failed: no lock exists"
// when there is none.
func (b *Backend) UnlockCommand(cmdName CommandName) error {
	req := struct{ CommandName CommandName }{cmdName}
	return b.call(http.MethodPost, "/api/atlantis/v1/command-lock/unlock", nil, req, nil)
}

// CheckCommandLock returns the global lock of cmdName, or nil.
func (b *Backend) CheckCommandLock(cmdName CommandName) (*CommandLock, error) {
	var out *CommandLock
	err := b.call(http.MethodGet, "/api/atlantis/v1/command-lock", nil, nil, &out)
	return out, err
}

// Close does nothing: the backend holds no connection of its own.
func (b *Backend) Close() error { return nil }
