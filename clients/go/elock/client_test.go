package elock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"elock.dev/go/elock"
	"elock.dev/go/internal/testserver"
)

func client(t *testing.T) *elock.Client {
	c, err := elock.New(testserver.Start(t))
	testserver.Must(t, err, "new client")
	return c
}

func TestAcquireReleaseRenewListAndRefusals(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	l, err := c.Acquire(ctx, elock.AcquireRequest{Resources: []string{"go/a", "go/b"}, Owner: "go-test", TTL: "1m"})
	testserver.Must(t, err, "acquire")
	if l.Token("go/a") == 0 || l.Token("go/b") == 0 || l.Owner != "go-test" {
		t.Fatalf("lease %+v", l)
	}
	_, err = c.Acquire(ctx, elock.AcquireRequest{Resources: []string{"go/a"}, Owner: "other"})
	var api *elock.APIError
	if !errors.As(err, &api) || api.Code != "locked" || api.Status != 409 {
		t.Fatalf("a held resource: %v", err)
	}
	r, err := c.Renew(ctx, l.ID, 10*time.Minute)
	testserver.Must(t, err, "renew")
	if r.ExpiresAt == nil || time.Until(*r.ExpiresAt) < 9*time.Minute {
		t.Fatalf("renewed to %v", r.ExpiresAt)
	}
	all, err := c.List(ctx, elock.ListFilter{ResourcePrefix: "go/"})
	testserver.Must(t, err, "list")
	if len(all) != 1 || all[0].ID != l.ID {
		t.Fatalf("list %+v", all)
	}
	_, err = c.Release(ctx, l.ID)
	testserver.Must(t, err, "release")
	if _, err := c.Get(ctx, l.ID); !elock.IsCode(err, "not_found") {
		t.Fatalf("a released lease: %v", err)
	}
	if _, err := c.Acquire(ctx, elock.AcquireRequest{Resources: []string{"go/a"}, Owner: "x", Priority: "urgent"}); !elock.IsCode(err, "invalid_request") {
		t.Fatalf("a bad priority: %v", err)
	}
}

func TestAWaiterIsHandedTheLockAndSeesItsPlace(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	first, err := c.Acquire(ctx, elock.AcquireRequest{Resources: []string{"go/q"}, Owner: "first"})
	testserver.Must(t, err, "acquire")
	got := make(chan *elock.Lease, 1)
	go func() {
		l, err := c.Acquire(ctx, elock.AcquireRequest{Resources: []string{"go/q"}, Owner: "second", Wait: "10s"})
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		got <- l
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := c.Resource(ctx, "go/q")
		testserver.Must(t, err, "resource")
		if len(r.Queue) == 1 && r.Queue[0].Owner == "second" && r.Queue[0].Position["go/q"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the waiter never queued: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = c.Release(ctx, first.ID)
	testserver.Must(t, err, "release")
	select {
	case l := <-got:
		if l == nil || l.Owner != "second" || l.Token("go/q") <= first.Token("go/q") {
			t.Fatalf("handed %+v", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not handed the lock")
	}
}

func TestAHeldLeaseIsRenewedAndItsLossReportedAtOnce(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	l, err := c.Acquire(ctx, elock.AcquireRequest{Resources: []string{"go/held"}, Owner: "holder", TTL: "1500ms"})
	testserver.Must(t, err, "acquire")
	h := c.Hold(l)
	time.Sleep(2500 * time.Millisecond) // past the ttl: only renewals keep it
	if _, err := c.Get(ctx, l.ID); err != nil {
		t.Fatalf("the held lease was not renewed: %v", err)
	}
	testserver.Must(t, h.Release(ctx), "release")

	// A force-release reaches the holder within a second, with its reason.
	l, err = c.Acquire(ctx, elock.AcquireRequest{Resources: []string{"go/held"}, Owner: "holder", TTL: "60s"})
	testserver.Must(t, err, "acquire")
	h = c.Hold(l)
	time.Sleep(300 * time.Millisecond) // the event stream is connected
	start := time.Now()
	err = c.Call(ctx, "POST", "/api/v1/resource/force-release", nil,
		map[string]string{"name": "go/held", "reason": "maintenance"}, nil)
	testserver.Must(t, err, "force-release")
	select {
	case err := <-h.Lost():
		var lost *elock.LeaseLost
		if !errors.As(err, &lost) || lost.What != "lock.force_released" || lost.Reason != "maintenance" {
			t.Fatalf("lost with %v", err)
		}
		if time.Since(start) > time.Second {
			t.Fatalf("the loss took %v", time.Since(start))
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the loss was not reported")
	}
	testserver.Must(t, h.Release(ctx), "release after loss")
}

func TestEventsArriveInOrder(t *testing.T) {
	c := client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := c.Events(ctx, []string{"lock.acquired", "lock.released"})
	time.Sleep(300 * time.Millisecond)
	l, err := c.Acquire(ctx, elock.AcquireRequest{Resources: []string{"go/e"}, Owner: "ev"})
	testserver.Must(t, err, "acquire")
	_, err = c.Release(ctx, l.ID)
	testserver.Must(t, err, "release")
	var seen []string
	for len(seen) < 2 {
		select {
		case item := <-events:
			if item.Event != nil && item.Event.LeaseID == l.ID {
				seen = append(seen, item.Event.Type)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("events seen: %v", seen)
		}
	}
	if seen[0] != "lock.acquired" || seen[1] != "lock.released" {
		t.Fatalf("events %v", seen)
	}
}
