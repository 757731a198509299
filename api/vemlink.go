package api

// The VEM agent's side of the VSM control channel, as its local API shows
// it (GET /v1/vsm on the agent's unix socket answers a VSMLinkStatus;
// vem/vemclient). The join data itself (VSMJoin) goes in through PUT
// /v1/vsm/join and never comes back out: its key is a secret.

// VEMAttachResult answers POST /v1/vsm/attach on the VEM agent: the vEth
// the VSM assigned (its port arrives in a following config delta).
type VEMAttachResult struct {
	Port string `json:"port"`
}

// ErrHeadless is the error code of a request that needs the VSM while the
// VEM has no connection to it (503): no vEth can be created headless.
const ErrHeadless = "headless"
