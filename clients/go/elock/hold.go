package elock

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// LeaseLost says why a held lease is gone: "lock.force_released", "lock.expired",
// "lock.released" (by someone else), or "not_found" (a renewal found it gone).
type LeaseLost struct {
	LeaseID string
	What    string
	Reason  string
}

func (e *LeaseLost) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("elock: lease %s lost: %s (%s)", e.LeaseID, e.What, e.Reason)
	}
	return fmt.Sprintf("elock: lease %s lost: %s", e.LeaseID, e.What)
}

// Holder keeps a lease: it renews it at a third of its ttl and follows the event stream, so a
// loss (force-release, expiry, a release by someone else) is reported on Lost within about a
// second, not at the next renewal.
type Holder struct {
	c      *Client
	lease  *Lease
	lost   chan error
	cancel context.CancelFunc
	once   sync.Once
	done   sync.WaitGroup
}

// Hold starts keeping lease. Call Release when done with it.
func (c *Client) Hold(lease *Lease) *Holder {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Holder{c: c, lease: lease, lost: make(chan error, 1), cancel: cancel}
	events := c.Events(ctx, []string{"lock.released", "lock.expired", "lock.force_released"})
	h.done.Add(2)
	go h.renew(ctx)
	go h.watch(ctx, events)
	return h
}

// Lease is the lease held.
func (h *Holder) Lease() *Lease { return h.lease }

// Lost delivers one error when the lease is lost (a *LeaseLost, or the last renewal error
// once the lease's deadline has passed without a renewal getting through).
func (h *Holder) Lost() <-chan error { return h.lost }

func (h *Holder) fail(err error) {
	h.once.Do(func() {
		h.lost <- err
		h.cancel()
	})
}

func (h *Holder) renew(ctx context.Context) {
	defer h.done.Done()
	if h.lease.ExpiresAt == nil {
		return // never expires: nothing to renew
	}
	ttl := h.lease.ExpiresAt.Sub(h.lease.AcquiredAt)
	deadline := *h.lease.ExpiresAt
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(ttl / 3):
		}
		l, err := h.c.Renew(ctx, h.lease.ID, 0)
		switch {
		case err == nil && l.ExpiresAt != nil:
			deadline = *l.ExpiresAt
		case IsCode(err, "not_found"):
			h.fail(&LeaseLost{LeaseID: h.lease.ID, What: "not_found"})
			return
		case err != nil && time.Now().After(deadline):
			h.fail(fmt.Errorf("elock: lease %s expired without a renewal getting through: %w", h.lease.ID, err))
			return
		}
	}
}

func (h *Holder) watch(ctx context.Context, events <-chan Item) {
	defer h.done.Done()
	for item := range events {
		if e := item.Event; e != nil && e.LeaseID == h.lease.ID {
			h.fail(&LeaseLost{LeaseID: h.lease.ID, What: e.Type, Reason: e.Reason})
			return
		}
	}
}

// Release stops keeping the lease and gives it back (a lease already lost is not an error).
func (h *Holder) Release(ctx context.Context) error {
	h.once.Do(func() { h.cancel() })
	h.done.Wait()
	_, err := h.c.Release(ctx, h.lease.ID)
	if IsCode(err, "not_found") {
		return nil
	}
	return err
}
