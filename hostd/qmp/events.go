package qmp

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event names hostd follows (QEMU emits more; all are delivered).
const (
	EventShutdown       = "SHUTDOWN"       // ShutdownData
	EventPowerdown      = "POWERDOWN"      // ACPI button pressed (system_powerdown)
	EventReset          = "RESET"          // ResetData
	EventStop           = "STOP"           // VM paused
	EventResume         = "RESUME"         // VM running again
	EventGuestPanicked  = "GUEST_PANICKED" // GuestPanickedData
	EventDeviceDeleted  = "DEVICE_DELETED" // DeviceDeletedData: device_del finished
	EventMigration      = "MIGRATION"      // MigrationData
	EventBlockIOError   = "BLOCK_IO_ERROR" // a disk failed (datastore full, path lost)
	EventSuspend        = "SUSPEND"        // guest entered S3
	EventWakeup         = "WAKEUP"         // guest left S3
	EventNicRxFilterChg = "NIC_RX_FILTER_CHANGED"
)

// Event is one asynchronous QMP event.
type Event struct {
	Name string          // e.g. "SHUTDOWN"
	Data json.RawMessage // the event's "data" object, nil when absent
	Time time.Time       // QEMU's timestamp; zero when absent or invalid
}

// DecodeData unmarshals the event's data into v.
func (e Event) DecodeData(v any) error {
	if len(e.Data) == 0 {
		return fmt.Errorf("qmp event %s: no data", e.Name)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("qmp event %s: %w", e.Name, err)
	}
	return nil
}

// ShutdownData is the data of SHUTDOWN. Guest is true when the guest OS
// powered off (also when it reacted to system_powerdown's ACPI button),
// false when the host ended the VM (quit, a signal to QEMU).
type ShutdownData struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"` // "host-qmp-quit", "guest-shutdown", "host-signal", ...
}

// ResetData is the data of RESET.
type ResetData struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"`
}

// GuestPanickedData is the data of GUEST_PANICKED.
type GuestPanickedData struct {
	Action string `json:"action"` // "pause", "poweroff", "run"
}

// DeviceDeletedData is the data of DEVICE_DELETED.
type DeviceDeletedData struct {
	Device string `json:"device,omitempty"` // the id given to device_add
	Path   string `json:"path"`
}

// MigrationData is the data of MIGRATION.
type MigrationData struct {
	Status string `json:"status"` // see Migration* constants
}

// Events returns the channel on which events arrive, in QEMU's order. It is
// the same channel on every call and is closed after the connection ends and
// the events received before that were delivered (or at Close). Events are
// queued for a slow reader; past a large backlog the oldest are dropped and
// counted by DroppedEvents.
func (c *Client) Events() <-chan Event { return c.events }

// DroppedEvents is how many events were dropped because nobody read them.
func (c *Client) DroppedEvents() uint64 {
	c.evmu.Lock()
	defer c.evmu.Unlock()
	return c.evDropped
}

func (c *Client) queueEvent(e Event) {
	c.evmu.Lock()
	if len(c.evq) >= eventBacklog {
		c.evq = c.evq[1:]
		c.evHead++
		c.evDropped++
	}
	c.evq = append(c.evq, e)
	c.evmu.Unlock()
	c.wakePump()
}

func (c *Client) wakePump() {
	select {
	case c.evWake <- struct{}{}:
	default:
	}
}

// pumpEvents moves queued events to the unbuffered Events channel so that a
// slow reader never stalls answers.
func (c *Client) pumpEvents() {
	defer close(c.events)
	for {
		c.evmu.Lock()
		var next Event
		have := len(c.evq) > 0
		seq := c.evHead
		if have {
			next = c.evq[0]
		}
		c.evmu.Unlock()
		if !have {
			select {
			case <-c.evWake:
				continue
			case <-c.done:
				// Connection gone: deliver what is left, then close.
				c.evmu.Lock()
				empty := len(c.evq) == 0
				c.evmu.Unlock()
				if empty {
					return
				}
				continue
			case <-c.stop:
				return
			}
		}
		select {
		case c.events <- next:
			c.evmu.Lock()
			if c.evHead == seq { // not dropped meanwhile
				c.evq = c.evq[1:]
				c.evHead++
			}
			c.evmu.Unlock()
		case <-c.stop:
			return
		}
	}
}
