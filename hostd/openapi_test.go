package hostd

import (
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/flashvisor/flashvisor/api"
)

// openAPI is the part of docs/openapi.yaml the tests check.
type openAPI struct {
	OpenAPI    string                          `yaml:"openapi"`
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		Schemas map[string]struct {
			Required   []string             `yaml:"required"`
			Properties map[string]yaml.Node `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	b, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRoutes keeps docs/openapi.yaml true: every route the
// server registers is documented and every documented operation exists.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	var documented []string
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
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
	sort.Strings(documented)
	sort.Strings(registered)
	if diff := cmp.Diff(registered, documented); diff != "" {
		t.Errorf("docs/openapi.yaml operations vs registered routes (-registered +documented):\n%s", diff)
	}
}

// TestOpenAPISchemasMatchTypes checks that each schema names exactly the
// JSON fields of its api type.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	for name, v := range map[string]any{
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
	} {
		sch, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		want := jsonFields(reflect.TypeOf(v))
		var got []string
		for p := range sch.Properties {
			got = append(got, p)
		}
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("schema %s properties vs api.%s JSON fields (-type +schema):\n%s", name, name, diff)
		}
		for _, r := range sch.Required {
			if !slices.Contains(want, r) {
				t.Errorf("schema %s requires %q, which api.%s lacks", name, r, name)
			}
		}
	}
}

// jsonFields lists a struct's JSON field names, with those of embedded
// structs inlined as encoding/json does.
func jsonFields(rt reflect.Type) []string {
	var out []string
	for i := range rt.NumField() {
		f := rt.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		out = append(out, tag)
	}
	return out
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
