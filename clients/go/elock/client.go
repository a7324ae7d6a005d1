// Package elock is a client of an elock server: acquire, wait, release and renew leases, hold a
// lease with a background renewer that reports its loss, list leases, and follow the event
// stream. It uses only the standard library.
//
//	c, _ := elock.New("http://127.0.0.1:4142", elock.WithToken(os.Getenv("ELOCK_TOKEN")))
//	lease, err := c.Acquire(ctx, elock.AcquireRequest{
//		Resources: []string{"acme/infra/envs/prod/default/"},
//		Owner:     "acme/infra#42",
//		Wait:      "10m",
//	})
//	if elock.IsCode(err, "locked") { ... }
//	defer c.Release(ctx, lease.ID)
package elock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to one elock server. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token as a bearer token with every call.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient uses h for every call (timeouts, TLS, proxies).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// New returns a client of the server at server: "http://host:port", or "host:port".
func New(server string, opts ...Option) (*Client, error) {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("elock: server %q is not http://host:port", server)
	}
	c := &Client{base: u, http: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// APIError is the server's refusal: its HTTP status, its error code (`locked`, `not_found`,
// `wait_timeout`, `deadlock`, `queue_full`, `invalid_request`, ...), its message and details.
type APIError struct {
	Status  int
	Code    string
	Message string
	Details map[string]interface{}
}

func (e *APIError) Error() string {
	return fmt.Sprintf("elock: %s (%d %s)", e.Message, e.Status, e.Code)
}

// IsCode reports whether err is the server's refusal with code.
func IsCode(err error, code string) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == code
}

// Call sends one request: body (if not nil) as JSON, the answer decoded into out (if not nil).
// Any answer that is not 2xx is an *APIError.
func (c *Client) Call(ctx context.Context, method, path string, query url.Values, body, out interface{}) error {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	if query != nil {
		u.RawQuery = query.Encode()
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("elock: encoding the request: %w", err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("elock: server unreachable: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("elock: reading the answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("elock: the answer is not what was expected: %w", err)
	}
	return nil
}

// apiError reads the server's error body: {"error": {"code", "message", "details"}}; a body
// that is not JSON (Atlantis's own pages answer in text) becomes the message.
func apiError(status int, data []byte) *APIError {
	var body struct {
		Error struct {
			Code    string                 `json:"code"`
			Message string                 `json:"message"`
			Details map[string]interface{} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
		return &APIError{Status: status, Code: body.Error.Code, Message: body.Error.Message, Details: body.Error.Details}
	}
	return &APIError{Status: status, Code: http.StatusText(status), Message: strings.TrimSpace(string(data))}
}

// duration is the server's text form of a duration ("1m30s").
func duration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", int64(d/time.Second))
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
