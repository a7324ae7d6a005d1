package elock

import "time"

// HeldResource is one resource of a lease with the fencing token it was granted.
type HeldResource struct {
	Resource     string `json:"resource"`
	FencingToken uint64 `json:"fencing_token"`
}

// Lease is a granted lock on one or more resources.
type Lease struct {
	ID         string                 `json:"id"`
	Owner      string                 `json:"owner"`
	Resources  []HeldResource         `json:"resources"`
	Priority   string                 `json:"priority"`
	AcquiredAt time.Time              `json:"acquired_at"`
	ExpiresAt  *time.Time             `json:"expires_at"`
	TTL        *string                `json:"ttl"`
	Metadata   map[string]interface{} `json:"metadata,omitempty"`
	State      string                 `json:"state"`
}

// Token is the fencing token of resource in the lease (0 when the lease does not hold it).
func (l *Lease) Token(resource string) uint64 {
	for _, h := range l.Resources {
		if h.Resource == resource {
			return h.FencingToken
		}
	}
	return 0
}

// AcquireRequest asks for every resource or none. Empty fields take the server's values (the
// resource's lock policy, then the defaults).
type AcquireRequest struct {
	Resources []string `json:"resources"`
	Owner     string   `json:"owner"`
	// low, normal, high or critical.
	Priority string `json:"priority,omitempty"`
	// The lease's lifetime, e.g. "30m".
	TTL string `json:"ttl,omitempty"`
	// How long to stand in line, e.g. "10m"; "0s" tries once.
	Wait string `json:"wait,omitempty"`
	// Queue and answer at once with a ticket.
	Detach   bool                   `json:"detach,omitempty"`
	Metadata map[string]interface{} `json:"metadata,omitempty"`
	// "refuse": this request is a holder of its own, never the owner's other lease back.
	Reentry string `json:"reentry,omitempty"`
}

// Ticket is a place in a queue.
type Ticket struct {
	ID         string            `json:"id"`
	Owner      string            `json:"owner"`
	Resources  []string          `json:"resources"`
	Priority   string            `json:"priority"`
	EnqueuedAt time.Time         `json:"enqueued_at"`
	Position   map[string]uint32 `json:"position"`
	Detached   bool              `json:"detached"`
}

// Resource is one resource's state: its holder, its queue in order, its last fencing token.
type Resource struct {
	Name             string   `json:"resource"`
	Holder           *Lease   `json:"holder"`
	Queue            []Ticket `json:"queue"`
	LastFencingToken uint64   `json:"last_fencing_token"`
}

// Event is one event of the stream (lock.acquired, lock.released, queue.granted, ...).
type Event struct {
	ID        uint64            `json:"id"`
	Type      string            `json:"type"`
	At        time.Time         `json:"at"`
	Resources []string          `json:"resources"`
	LeaseID   string            `json:"lease_id,omitempty"`
	TicketID  string            `json:"ticket_id,omitempty"`
	Owner     string            `json:"owner,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Tokens    map[string]uint64 `json:"fencing_tokens,omitempty"`
	Token     uint64            `json:"fencing_token,omitempty"`
}
