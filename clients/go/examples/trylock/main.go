// Command trylock takes and gives back one Atlantis project lock through elock's Atlantis
// adapter, as an Atlantis built with the atlantislock backend does at plan time:
//
//	ELOCK_SERVER=http://127.0.0.1:4142 go run ./examples/trylock acme/infra envs/prod 42
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"elock.dev/go/atlantislock"
	"elock.dev/go/elock"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: trylock REPO PATH PULL")
		os.Exit(64)
	}
	pull, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "trylock: PULL must be a number")
		os.Exit(64)
	}
	server := os.Getenv("ELOCK_SERVER")
	if server == "" {
		server = "http://127.0.0.1:4142"
	}
	c, err := elock.New(server, elock.WithToken(os.Getenv("ELOCK_TOKEN")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(64)
	}
	b := atlantislock.New(c)
	lock := atlantislock.ProjectLock{
		Project:   atlantislock.Project{RepoFullName: os.Args[1], Path: os.Args[2]},
		Pull:      atlantislock.PullRequest{Num: pull},
		User:      atlantislock.User{Username: os.Getenv("USER")},
		Workspace: "default",
		Time:      time.Now().UTC(),
	}
	ok, curr, err := b.TryLock(lock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "trylock:", err)
		os.Exit(1)
	}
	key := atlantislock.Key(lock.Project, lock.Workspace)
	if !ok {
		fmt.Printf("%s is locked by pull %d\n", key, curr.Pull.Num)
		os.Exit(2)
	}
	fmt.Printf("locked %s for pull %d\n", key, pull)
	if os.Getenv("KEEP") == "" {
		if _, err := b.Unlock(lock.Project, lock.Workspace); err != nil {
			fmt.Fprintln(os.Stderr, "trylock:", err)
			os.Exit(1)
		}
		fmt.Printf("unlocked %s\n", key)
	}
}
