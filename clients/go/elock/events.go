package elock

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Gap says the server could not replay every event since the last one seen (it keeps a bounded
// history, and a restart starts its ids again): state read before it may be stale.
type Gap struct {
	FirstAvailable uint64 `json:"first_available"`
}

// Item is one message of the stream: an event, or a gap.
type Item struct {
	Event *Event
	Gap   *Gap
}

// Events follows the server's event stream (only `types`, when given) until ctx ends. The
// stream reconnects by itself (100ms, doubling to 5s) and resumes after the last event seen;
// what it could not replay comes as a Gap. The channel closes when ctx ends.
func (c *Client) Events(ctx context.Context, types []string) <-chan Item {
	out := make(chan Item, 64)
	go func() {
		defer close(out)
		var last uint64
		delay := 100 * time.Millisecond
		for ctx.Err() == nil {
			if c.stream(ctx, types, &last, out) {
				delay = 100 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			if delay *= 2; delay > 5*time.Second {
				delay = 5 * time.Second
			}
		}
	}()
	return out
}

// stream reads one connection until it ends; whether it delivered anything.
func (c *Client) stream(ctx context.Context, types []string, last *uint64, out chan<- Item) bool {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v1/events"
	if len(types) > 0 {
		u.RawQuery = url.Values{"types": {strings.Join(types, ",")}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if *last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*last, 10))
	}
	// The stream lives as long as the context: no client timeout applies to it.
	h := *c.http
	h.Timeout = 0
	resp, err := h.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	delivered := false
	scan := bufio.NewScanner(resp.Body)
	scan.Buffer(make([]byte, 64*1024), 4*1024*1024)
	var kind, data, id string
	for scan.Scan() {
		line := scan.Text()
		switch {
		case line == "":
			if data != "" {
				item, ok := decode(kind, data)
				if ok {
					if n, err := strconv.ParseUint(id, 10, 64); err == nil {
						*last = n
					}
					select {
					case out <- item:
						delivered = true
					case <-ctx.Done():
						return delivered
					}
				}
			}
			kind, data, id = "", "", ""
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		case strings.HasPrefix(line, "event:"):
			kind = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		}
	}
	return delivered
}

func decode(kind, data string) (Item, bool) {
	if kind == "gap" {
		var g Gap
		return Item{Gap: &g}, json.Unmarshal([]byte(data), &g) == nil
	}
	var e Event
	return Item{Event: &e}, json.Unmarshal([]byte(data), &e) == nil
}
