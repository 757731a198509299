package main

// Result is what one `vembench run` measured, written as one JSON document
// to the results port (fvbench reads it back; its decoder in
// qemu-test/cmd/fvbench/vem.go mirrors these fields).
type Result struct {
	Host HostInfo `json:"host"`
	// Options of the run.
	Runs    int `json:"runs"`    // repetitions of each forwarding measurement
	Seconds int `json:"seconds"` // iperf3 -t
	Ports   int `json:"ports"`   // vEth ports of the scale measurements

	// Switches are the forwarding measurements: "bridge", "vem", "ovs".
	Switches []SwitchResult `json:"switches"`
	// Reconcile is the agent's reconcile time with Ports ports (in-process
	// agent, real NetlinkKernel, own network namespace).
	Reconcile ReconcileResult `json:"reconcile"`
	// Memory is vemd's resident memory with Ports ports programmed.
	Memory MemoryResult `json:"memory"`

	WallSeconds float64 `json:"wall_seconds"`
	// Error is set when the run failed; what was measured before is kept.
	Error string `json:"error,omitempty"`
}

// HostInfo describes the (emulated) host the figures come from.
type HostInfo struct {
	Kernel string `json:"kernel"`
	CPUs   int    `json:"cpus"`
	MemMiB int    `json:"mem_mib"`
	IPerf3 string `json:"iperf3"`
	OVS    string `json:"ovs"`
}

// SwitchResult is one switch's forwarding figures, one entry per run.
type SwitchResult struct {
	Name   string `json:"name"`
	Config string `json:"config"` // what was programmed, for the reader
	// TCP: bits/s received (iperf3, 1 stream, first second omitted).
	TCPBitsPerSecond []float64 `json:"tcp_bps"`
	// UDP with 64-byte payloads, unlimited offered rate: packets/s sent
	// by iperf3, received by the iperf3 server, and delivered by the switch
	// to the receiving VM's interface (its rx_packets).
	// pktgen: 64-byte frames/s sent by the kernel's packet generator from
	// the client VM's eth0 and received on the server VM's eth0.
	PktgenSentPPS      []float64 `json:"pktgen_sent_pps"`
	PktgenDeliveredPPS []float64 `json:"pktgen_delivered_pps"`
	UDPSentPPS         []float64 `json:"udp_sent_pps"`
	UDPReceivedPPS     []float64 `json:"udp_received_pps"`
	UDPDeliveredPPS    []float64 `json:"udp_delivered_pps"`
	// Counters the switch reports after the runs (VEM: per-port drop
	// counters summed over both ports), to show the policy was in the path.
	Counters map[string]uint64 `json:"counters,omitempty"`
}

// ReconcileResult is the VEM agent's SetConfig time, in seconds, per run.
type ReconcileResult struct {
	Ports int `json:"ports"`
	// Create: one SetConfig with every port, from no switch at all.
	Create []float64 `json:"create"`
	// Noop: the same config again (what the periodic reconcile costs).
	Noop []float64 `json:"noop"`
	// ChangeMAC: one port's MAC changed (static entry, port-security
	// filter).
	ChangeMAC []float64 `json:"change_mac"`
	// Change: that port moved to a profile with another access VLAN.
	Change []float64 `json:"change"`
	// ChangeError is the first error of a Change, if any (the time is
	// kept).
	ChangeError string `json:"change_error,omitempty"`
	// Delete: a config without ports (every tap deleted).
	Delete []float64 `json:"delete"`
	// KernelChanges is how many kernel changes the first Create applied,
	// ChangeMACChanges and ChangeChanges the first ChangeMAC and Change.
	KernelChanges    int `json:"kernel_changes"`
	ChangeMACChanges int `json:"change_mac_changes"`
	ChangeChanges    int `json:"change_changes"`
}

// MemoryResult is vemd's memory, from /proc/PID/status, in KiB.
type MemoryResult struct {
	Ports int `json:"ports"`
	// IdleRSS: started, no config yet.
	IdleRSS int `json:"idle_rss_kib"`
	// PutSeconds: PUT /v1/config with every port through vemclient,
	// answered with the ports' status (reconcile + one more observation).
	PutSeconds float64 `json:"put_seconds"`
	// PutError is the client's error when it gave up before the agent
	// answered (vemclient's timeout); PutSeconds then runs until the
	// agent's card showed the config applied.
	PutError string `json:"put_error,omitempty"`
	// RSS right after the PUT, then the smallest and largest of samples
	// taken every SampleEvery over SampleFor (spanning periodic
	// reconciles), and the peak (VmHWM) at the end.
	AfterPutRSS  int     `json:"after_put_rss_kib"`
	MinRSS       int     `json:"min_rss_kib"`
	MaxRSS       int     `json:"max_rss_kib"`
	HWM          int     `json:"hwm_kib"`
	SampleEvery  float64 `json:"sample_every_seconds"`
	SampleFor    float64 `json:"sample_for_seconds"`
	Interval     float64 `json:"reconcile_interval_seconds"`
	StateFileKiB int     `json:"state_file_kib"`
}
