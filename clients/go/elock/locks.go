package elock

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Acquire takes every resource of req or none: the lease, or an *APIError (`locked`,
// `wait_timeout`, `deadlock`, `queue_full`, ...). With Wait it stands in line that long.
func (c *Client) Acquire(ctx context.Context, req AcquireRequest) (*Lease, error) {
	var answer struct {
		Lease
		Reentrant bool `json:"reentrant"`
	}
	if err := c.Call(ctx, http.MethodPost, "/api/v1/locks", nil, req, &answer); err != nil {
		return nil, err
	}
	return &answer.Lease, nil
}

// Release gives a lease back: the released lease.
func (c *Client) Release(ctx context.Context, id string) (*Lease, error) {
	var l Lease
	return &l, c.Call(ctx, http.MethodDelete, "/api/v1/locks/"+url.PathEscape(id), nil, nil, &l)
}

// Renew makes the lease expire ttl from now (its own ttl when ttl is 0).
func (c *Client) Renew(ctx context.Context, id string, ttl time.Duration) (*Lease, error) {
	body := map[string]string{}
	if ttl > 0 {
		body["ttl"] = duration(ttl)
	}
	var l Lease
	return &l, c.Call(ctx, http.MethodPost, "/api/v1/locks/"+url.PathEscape(id)+"/renew", nil, body, &l)
}

// Get reads one lease.
func (c *Client) Get(ctx context.Context, id string) (*Lease, error) {
	var l Lease
	return &l, c.Call(ctx, http.MethodGet, "/api/v1/locks/"+url.PathEscape(id), nil, nil, &l)
}

// ListFilter selects leases; empty fields select everything.
type ListFilter struct {
	ResourcePrefix string
	Owner          string
}

// List returns the held leases that filter selects.
func (c *Client) List(ctx context.Context, filter ListFilter) ([]Lease, error) {
	q := url.Values{}
	if filter.ResourcePrefix != "" {
		q.Set("resource_prefix", filter.ResourcePrefix)
	}
	if filter.Owner != "" {
		q.Set("owner", filter.Owner)
	}
	var answer struct {
		Locks []Lease `json:"locks"`
	}
	if err := c.Call(ctx, http.MethodGet, "/api/v1/locks", q, nil, &answer); err != nil {
		return nil, err
	}
	return answer.Locks, nil
}

// Resource reads one resource: its holder and its queue.
func (c *Client) Resource(ctx context.Context, name string) (*Resource, error) {
	var r Resource
	return &r, c.Call(ctx, http.MethodGet, "/api/v1/resource", url.Values{"name": {name}}, nil, &r)
}
