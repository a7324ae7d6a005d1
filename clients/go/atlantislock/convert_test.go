package atlantislock_test

import (
	"reflect"
	"testing"
	"time"

	"elock.dev/go/atlantislock"
	"elock.dev/go/internal/testserver"
)

// Stand-ins for Atlantis's own types (models.ProjectLock and friends), declared as Atlantis
// declares them: a server's code converts between them and this package's.
type atlantisProject struct{ ProjectName, RepoFullName, Path string }
type atlantisVCSHost struct {
	Hostname string
	Type     int
}
type atlantisRepo struct {
	FullName, Owner, Name, CloneURL, SanitizedCloneURL string
	VCSHost                                            atlantisVCSHost
}
type atlantisPull struct {
	Num                                     int
	HeadCommit, URL, HeadBranch, BaseBranch string
	HardenedNonPRRefCheckout                bool
	Author, Body                            string
	State                                   int
	BaseRepo                                atlantisRepo
}
type atlantisUser struct {
	Username string
	Teams    []string
}
type atlantisProjectLock struct {
	Project   atlantisProject
	Pull      atlantisPull
	User      atlantisUser
	Workspace string
	Time      time.Time
}

func TestLocksConvertToAndFromAtlantisTypes(t *testing.T) {
	theirs := atlantisProjectLock{
		Project: atlantisProject{ProjectName: "app", RepoFullName: "acme/infra", Path: "envs/prod"},
		Pull: atlantisPull{Num: 42, URL: "https://github.com/acme/infra/pull/42", State: 1,
			BaseRepo: atlantisRepo{FullName: "acme/infra", VCSHost: atlantisVCSHost{Hostname: "github.com", Type: 1}}},
		User:      atlantisUser{Username: "alice", Teams: []string{"sre"}},
		Workspace: "default",
		Time:      time.Date(2025, 3, 4, 10, 15, 30, 123456789, time.UTC),
	}
	var ours atlantislock.ProjectLock
	testserver.Must(t, atlantislock.Convert(theirs, &ours), "to ours")
	if ours.Pull.Num != 42 || ours.Pull.State != atlantislock.ClosedPullState || ours.Pull.BaseRepo.VCSHost.Type != 1 ||
		atlantislock.Key(ours.Project, ours.Workspace) != "acme/infra/envs/prod/default/app" {
		t.Fatalf("ours %+v", ours)
	}
	var back atlantisProjectLock
	testserver.Must(t, atlantislock.Convert(ours, &back), "back")
	if !reflect.DeepEqual(back, theirs) {
		t.Fatalf("back %+v\nwas  %+v", back, theirs)
	}
}
