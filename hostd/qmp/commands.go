package qmp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Run states reported by query-status (QEMU's RunState).
const (
	StateRunning       = "running"
	StatePaused        = "paused"
	StateShutdown      = "shutdown"
	StatePrelaunch     = "prelaunch" // started with -S, never run
	StateInMigrate     = "inmigrate" // waiting for -incoming
	StatePostMigrate   = "postmigrate"
	StateFinishMigrate = "finish-migrate"
	StateSuspended     = "suspended" // guest in S3
	StateGuestPanicked = "guest-panicked"
	StateIOError       = "io-error"
	StateInternalError = "internal-error"
	StateWatchdog      = "watchdog"
	StateDebug         = "debug"
	StateRestoreVM     = "restore-vm"
	StateSaveVM        = "save-vm"
)

// Status is the answer of query-status.
type Status struct {
	Status  string `json:"status"`
	Running bool   `json:"running"`
	// Singlestep is only reported by QEMU before 9.0.
	Singlestep bool `json:"singlestep,omitempty"`
}

// QueryStatus returns the VM's run state.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// QueryVersion asks QEMU for its version.
func (c *Client) QueryVersion(ctx context.Context) (Version, error) {
	var v struct {
		QEMU    Version `json:"qemu"`
		Package string  `json:"package"`
	}
	if err := c.Execute(ctx, "query-version", nil, &v); err != nil {
		return Version{}, err
	}
	v.QEMU.Package = v.Package
	return v.QEMU, nil
}

// SystemPowerdown presses the ACPI power button; the guest decides.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// SystemReset resets the VM like the reset button.
func (c *Client) SystemReset(ctx context.Context) error {
	return c.Execute(ctx, "system_reset", nil, nil)
}

// Stop pauses the VM.
func (c *Client) Stop(ctx context.Context) error { return c.Execute(ctx, "stop", nil, nil) }

// Cont resumes a paused VM (or starts one created with -S).
func (c *Client) Cont(ctx context.Context) error { return c.Execute(ctx, "cont", nil, nil) }

// Quit ends QEMU at once (power off, no guest involvement). QEMU may close
// the socket before its answer arrives; that counts as success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// Screendump writes the display to filename, a path on the host. format is
// "png" (QEMU 7.1+) or "" for QEMU's default, PPM.
func (c *Client) Screendump(ctx context.Context, filename, format string) error {
	args := map[string]any{"filename": filename}
	if format != "" {
		args["format"] = format
	}
	return c.Execute(ctx, "screendump", args, nil)
}

// HumanMonitorCommand runs an HMP command line (e.g. "info block") and
// returns its text output. Use it only for what has no QMP command.
func (c *Client) HumanMonitorCommand(ctx context.Context, cmdline string) (string, error) {
	var out string
	err := c.Execute(ctx, "human-monitor-command", map[string]any{"command-line": cmdline}, &out)
	return out, err
}

// DeviceAdd hot-adds a device: driver (e.g. "virtio-net-pci"), id (used by
// DeviceDel and in DEVICE_DELETED) and the device's properties.
func (c *Client) DeviceAdd(ctx context.Context, driver, id string, props map[string]any) error {
	args := make(map[string]any, len(props)+2)
	for k, v := range props {
		args[k] = v
	}
	args["driver"] = driver
	args["id"] = id
	return c.Execute(ctx, "device_add", args, nil)
}

// DeviceDel asks the guest to release a device. It returns when the request
// is sent; the device is gone when DEVICE_DELETED with this id arrives.
func (c *Client) DeviceDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "device_del", map[string]any{"id": id}, nil)
}

// NetdevAdd adds a host network backend: typ is e.g. "tap", props e.g.
// {"ifname": "fvtap3", "script": "no", "downscript": "no", "vhost": true}.
func (c *Client) NetdevAdd(ctx context.Context, typ, id string, props map[string]any) error {
	args := make(map[string]any, len(props)+2)
	for k, v := range props {
		args[k] = v
	}
	args["type"] = typ
	args["id"] = id
	return c.Execute(ctx, "netdev_add", args, nil)
}

// NetdevDel removes a host network backend.
func (c *Client) NetdevDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "netdev_del", map[string]any{"id": id}, nil)
}

// BlockdevAdd adds a block node; opts is the blockdev-add argument object
// (e.g. {"driver": "qcow2", "node-name": "disk1", "file": {...}}).
func (c *Client) BlockdevAdd(ctx context.Context, opts any) error {
	return c.Execute(ctx, "blockdev-add", opts, nil)
}

// BlockdevDel removes a block node that no device uses any more.
func (c *Client) BlockdevDel(ctx context.Context, nodeName string) error {
	return c.Execute(ctx, "blockdev-del", map[string]any{"node-name": nodeName}, nil)
}

// ObjectAdd creates a QOM object, e.g. a memory backend for a DIMM:
// ObjectAdd(ctx, "memory-backend-ram", "mem-dimm0", map[string]any{"size": n}).
// The properties are given flat, as QEMU 6.0 and later take them.
func (c *Client) ObjectAdd(ctx context.Context, qomType, id string, props map[string]any) error {
	args := make(map[string]any, len(props)+2)
	for k, v := range props {
		args[k] = v
	}
	args["qom-type"] = qomType
	args["id"] = id
	return c.Execute(ctx, "object-add", args, nil)
}

// ObjectDel removes a QOM object that nothing uses any more.
func (c *Client) ObjectDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "object-del", map[string]any{"id": id}, nil)
}

// Memory device types (query-memory-devices "type").
const (
	MemoryDeviceDIMM = "dimm"
)

// MemoryDevice is one entry of query-memory-devices. Data is filled for
// DIMMs (type "dimm"); other types (nvdimm, virtio-mem, ...) keep only
// their type here.
type MemoryDevice struct {
	Type string   `json:"type"`
	Data DIMMInfo `json:"data"`
}

// DIMMInfo describes a pc-dimm.
type DIMMInfo struct {
	ID           string `json:"id"`
	Addr         uint64 `json:"addr"`
	Size         uint64 `json:"size"` // bytes
	Slot         int    `json:"slot"`
	Node         int    `json:"node"`
	Memdev       string `json:"memdev"` // QOM path, e.g. /objects/mem-dimm0
	Hotplugged   bool   `json:"hotplugged"`
	Hotpluggable bool   `json:"hotpluggable"`
}

// QueryMemoryDevices lists the VM's memory devices (DIMMs), hot-plugged
// or given on the command line.
func (c *Client) QueryMemoryDevices(ctx context.Context) ([]MemoryDevice, error) {
	var out []MemoryDevice
	err := c.Execute(ctx, "query-memory-devices", nil, &out)
	return out, err
}

// MemorySize is the answer of query-memory-size-summary, in bytes.
type MemorySize struct {
	// Base is the memory QEMU started with (-m size).
	Base uint64 `json:"base-memory"`
	// Plugged is the memory in memory devices (DIMMs).
	Plugged uint64 `json:"plugged-memory"`
}

// QueryMemorySizeSummary returns the VM's base and plugged memory.
func (c *Client) QueryMemorySizeSummary(ctx context.Context) (MemorySize, error) {
	var out MemorySize
	err := c.Execute(ctx, "query-memory-size-summary", nil, &out)
	return out, err
}

// Migration states (query-migrate "status", MIGRATION event).
const (
	MigrationNone      = "none"
	MigrationSetup     = "setup"
	MigrationActive    = "active"
	MigrationDevice    = "device"
	MigrationCompleted = "completed"
	MigrationFailed    = "failed"
	MigrationCancelled = "cancelled"
	MigrationCancel    = "cancelling"
)

// MigrationInfo is the part of query-migrate's answer hostd uses.
type MigrationInfo struct {
	Status    string `json:"status"`
	TotalTime int64  `json:"total-time,omitempty"` // ms
	Downtime  int64  `json:"downtime,omitempty"`   // ms
	ErrorDesc string `json:"error-desc,omitempty"`
	RAM       *struct {
		Transferred int64 `json:"transferred"`
		Remaining   int64 `json:"remaining"`
		Total       int64 `json:"total"`
	} `json:"ram,omitempty"`
}

// QueryMigrate returns the state of the current (or last) migration.
func (c *Client) QueryMigrate(ctx context.Context) (MigrationInfo, error) {
	var m MigrationInfo
	err := c.Execute(ctx, "query-migrate", nil, &m)
	return m, err
}

// Migrate starts an outgoing migration to uri ("tcp:host:port", "fd:name",
// "exec:cmd", "file:path" on QEMU 8.2+). It returns once started.
func (c *Client) Migrate(ctx context.Context, uri string) error {
	return c.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil)
}

// MigrateIncoming starts the incoming side of a QEMU run with
// "-incoming defer".
func (c *Client) MigrateIncoming(ctx context.Context, uri string) error {
	return c.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil)
}

// ErrMigrationFailed is wrapped when a migration ends failed or cancelled.
var ErrMigrationFailed = errors.New("migration failed")

// WaitMigration polls query-migrate every poll until the migration
// completes (nil), fails or is cancelled (ErrMigrationFailed) or ctx ends.
func (c *Client) WaitMigration(ctx context.Context, poll time.Duration) (MigrationInfo, error) {
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		m, err := c.QueryMigrate(ctx)
		if err != nil {
			return m, err
		}
		switch m.Status {
		case MigrationCompleted:
			return m, nil
		case MigrationFailed, MigrationCancelled:
			return m, fmt.Errorf("%w: %s %s", ErrMigrationFailed, m.Status, m.ErrorDesc)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return m, fmt.Errorf("waiting for migration (%s): %w", m.Status, ctx.Err())
		}
	}
}

// GetFD hands f to QEMU under name (the getfd command, with f attached as
// SCM_RIGHTS). Later commands refer to it as "fd:name". The connection must
// be a unix socket.
func (c *Client) GetFD(ctx context.Context, name string, f *os.File) error {
	if _, err := c.execute(ctx, "getfd", map[string]any{"fdname": name}, f); err != nil {
		return err
	}
	return nil
}

// CloseFD releases a descriptor given with GetFD and not consumed.
func (c *Client) CloseFD(ctx context.Context, name string) error {
	return c.Execute(ctx, "closefd", map[string]any{"fdname": name}, nil)
}

// MigrateToFile writes the VM's state to path (created or truncated, mode
// 0600) and waits until QEMU is done. Call Stop first for a suspend; the VM
// is left in "postmigrate". See the package documentation.
func (c *Client) MigrateToFile(ctx context.Context, path string, poll time.Duration) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("migrate to file: %w", err)
	}
	defer f.Close()
	name := fmt.Sprintf("fvmig%d", c.fdSeq.Add(1))
	if err := c.GetFD(ctx, name, f); err != nil {
		return fmt.Errorf("migrate to %s: %w", path, err)
	}
	if err := c.Migrate(ctx, "fd:"+name); err != nil {
		_ = c.CloseFD(ctx, name)
		return fmt.Errorf("migrate to %s: %w", path, err)
	}
	if _, err := c.WaitMigration(ctx, poll); err != nil {
		return fmt.Errorf("migrate to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("migrate to %s: %w", path, err)
	}
	return nil
}

// MigrateIncomingFromFile loads state written by MigrateToFile into a QEMU
// started with "-incoming defer" and waits until it is loaded. The VM is
// then paused (with -S) or running; call Cont as needed.
func (c *Client) MigrateIncomingFromFile(ctx context.Context, path string, poll time.Duration) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("incoming migration: %w", err)
	}
	defer f.Close()
	name := fmt.Sprintf("fvmig%d", c.fdSeq.Add(1))
	if err := c.GetFD(ctx, name, f); err != nil {
		return fmt.Errorf("incoming migration from %s: %w", path, err)
	}
	if err := c.MigrateIncoming(ctx, "fd:"+name); err != nil {
		_ = c.CloseFD(ctx, name)
		return fmt.Errorf("incoming migration from %s: %w", path, err)
	}
	if _, err := c.WaitMigration(ctx, poll); err != nil {
		return fmt.Errorf("incoming migration from %s: %w", path, err)
	}
	return nil
}
