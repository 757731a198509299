package hostd

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/openapitest"
)

func loadOpenAPI(t *testing.T) openapitest.Doc {
	t.Helper()
	return openapitest.Load(t, "../docs/openapi.yaml")
}

// TestOpenAPIMatchesRoutes keeps docs/openapi.yaml true: every route the
// server registers is documented and every documented operation exists.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	e := newEnv(t)
	s, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	// OpenAPI has no multi-segment wildcard: {path...} is documented as
	// {path}, its description saying it may hold slashes.
	var registered []string
	for _, r := range s.Routes() {
		registered = append(registered, strings.ReplaceAll(r, "...}", "}"))
	}
	doc.CheckRoutes(t, registered)
}

// TestOpenAPISchemasMatchTypes checks that each schema names exactly the
// JSON fields of its api type.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	doc.CheckSchemas(t, map[string]any{
		"Host":          api.Host{},
		"Service":       api.Service{},
		"ServiceLog":    api.ServiceLog{},
		"SignalRequest": api.SignalRequest{},
		"Accepted":      api.Accepted{},
		"Error":         api.Error{},
		// Storage, datastores and tasks.
		"BlockDevice":            api.BlockDevice{},
		"Disk":                   api.Disk{},
		"Datastore":              api.Datastore{},
		"DatastoreCreateRequest": api.DatastoreCreateRequest{},
		"Task":                   api.Task{},
		"Event":                  api.Event{},
		"DatastoreEntry":         api.DatastoreEntry{},
		// VMs and port groups.
		"VMSpec":            api.VMSpec{},
		"KernelBoot":        api.KernelBoot{},
		"SCSIController":    api.SCSIController{},
		"VirtualDisk":       api.VirtualDisk{},
		"CDROM":             api.CDROM{},
		"NIC":               api.NIC{},
		"Autostart":         api.Autostart{},
		"VMStatus":          api.VMStatus{},
		"VM":                api.VM{},
		"VMCreateRequest":   api.VMCreateRequest{},
		"VMRegisterRequest": api.VMRegisterRequest{},
		"Snapshot":          api.Snapshot{},
		"SnapshotRequest":   api.SnapshotRequest{},
		"PortGroup":         api.PortGroup{},
		"RateLimit":         api.RateLimit{},
		"Uplink":            api.Uplink{},
		"PortChannel":       api.PortChannel{},
		"VethAssignment":    api.VethAssignment{},
		"SwitchView":        api.SwitchView{},
		"PortStatus":        api.PortStatus{},
		"PortCounters":      api.PortCounters{},
		"MACEntry":          api.MACEntry{},
		"VEMCard":           api.VEMCard{},
		"VSMLinkStatus":     api.VSMLinkStatus{},
		"VSMJoin":           api.VSMJoin{},
		"VSMOpaque":         api.VSMOpaque{},
		"VSMUplink":         api.VSMUplink{},
		"PortProfile":       api.PortProfile{},
		"PortSecurity":      api.PortSecurity{},
		"VMKNIC":            api.VMKNIC{},
		"VMKIPv4":           api.VMKIPv4{},
		"VMKNICStatus":      api.VMKNICStatus{},
		"NetworkChange":     api.NetworkChange{},
		"ConfirmRequest":    api.ConfirmRequest{},
		// Disk operations.
		"DiskCopyRequest": api.DiskCopyRequest{},
		"DiskGrowRequest": api.DiskGrowRequest{},
		"DiskInfo":        api.DiskInfo{},
	})
}

// TestOpenAPIRefsResolve checks that every $ref names a component that
// exists, so a typo in docs/ does not go unnoticed.
func TestOpenAPIRefsResolve(t *testing.T) {
	b, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	components, _ := doc["components"].(map[string]any)
	var walk func(v any)
	n := 0
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				n++
				kind, name, _ := strings.Cut(strings.TrimPrefix(ref, "#/components/"), "/")
				if m, _ := components[kind].(map[string]any); m[name] == nil {
					t.Errorf("$ref %q: no such component", ref)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if n == 0 {
		t.Error("no $ref found: the walk is broken")
	}
}
