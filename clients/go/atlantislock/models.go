// Package atlantislock is Atlantis's locking backend over elock's Atlantis adapter: the lock
// methods of Atlantis's db.Database (locking.Backend before v0.37) with Atlantis's own model
// types, mirrored field for field (same names, same order, no JSON tags), so that Atlantis's
// server can keep its locks in elock (queues, priorities, expiry, events) without other
// changes. See docs/atlantis.md for the lines that wire it into Atlantis's server setup.
package atlantislock

import (
	"encoding/json"
	"time"
)

// ProjectLock is Atlantis's models.ProjectLock.
type ProjectLock struct {
	Project   Project
	Pull      PullRequest
	User      User
	Workspace string
	Time      time.Time
}

// Project is Atlantis's models.Project.
type Project struct {
	ProjectName  string
	RepoFullName string
	Path         string
}

// PullRequestState is Atlantis's models.PullRequestState: 0 open, 1 closed.
type PullRequestState int

const (
	OpenPullState PullRequestState = iota
	ClosedPullState
)

// PullRequest is Atlantis's models.PullRequest.
type PullRequest struct {
	Num                      int
	HeadCommit               string
	URL                      string
	HeadBranch               string
	BaseBranch               string
	HardenedNonPRRefCheckout bool
	Author                   string
	Body                     string
	State                    PullRequestState
	BaseRepo                 Repo
}

// VCSHostType is Atlantis's models.VCSHostType: 0 GitHub, 1 GitLab, 2 Bitbucket Cloud,
// 3 Bitbucket Server, 4 Azure DevOps, 5 Gitea.
type VCSHostType int

// VCSHost is Atlantis's models.VCSHost.
type VCSHost struct {
	Hostname string
	Type     VCSHostType
}

// Repo is Atlantis's models.Repo. CloneURL holds the VCS credentials; elock stores it with
// them replaced by <redacted>.
type Repo struct {
	FullName          string
	Owner             string
	Name              string
	CloneURL          string
	SanitizedCloneURL string
	VCSHost           VCSHost
}

// User is Atlantis's models.User.
type User struct {
	Username string
	Teams    []string
}

// CommandName is Atlantis's command.Name; Apply (0) is the only command with a global lock.
type CommandName int

const Apply CommandName = 0

// LockMetadata is Atlantis's command.LockMetadata.
type LockMetadata struct {
	UnixTime int64
}

// CommandLock is Atlantis's command.Lock: the global apply lock.
type CommandLock struct {
	LockMetadata LockMetadata
	CommandName  CommandName
}

// IsLocked is Atlantis's command.Lock.IsLocked.
func (l *CommandLock) IsLocked() bool { return !l.LockTime().IsZero() }

// LockTime is Atlantis's command.Lock.LockTime.
func (l *CommandLock) LockTime() time.Time {
	if l.LockMetadata.UnixTime == 0 {
		return time.Time{}
	}
	return time.Unix(l.LockMetadata.UnixTime, 0)
}

// Key is Atlantis's lock key of a project in a workspace ({repo}/{path}/{workspace}/{name}).
func Key(p Project, workspace string) string {
	return p.RepoFullName + "/" + p.Path + "/" + workspace + "/" + p.ProjectName
}

// Convert copies a lock between Atlantis's own types and these (or any two types with the same
// JSON): ProjectLock to models.ProjectLock and back, CommandLock to command.Lock and back. The
// types are the same field for field, but Go converts only between identical named types.
func Convert(from, to interface{}) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, to)
}
