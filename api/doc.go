// Package api holds Flashvisor's wire types: the host management API's JSON
// bodies, the init control protocol spoken between PID 1 and hostd, and the
// image manifest. It imports nothing else of ours so every component (and
// every external client) can depend on it.
package api
