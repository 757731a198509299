package vsm_test

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/vsm"
)

// TestOpenAPI keeps docs/vsm-openapi.yaml true: its operations are the
// routes, its own schemas have exactly their types' JSON fields, and every
// $ref names a schema that exists (here or in docs/openapi.yaml).
func TestOpenAPI(t *testing.T) {
	type schema struct {
		Required   []string             `yaml:"required"`
		Properties map[string]yaml.Node `yaml:"properties"`
	}
	type doc struct {
		OpenAPI    string                          `yaml:"openapi"`
		Paths      map[string]map[string]yaml.Node `yaml:"paths"`
		Components struct {
			Schemas map[string]schema `yaml:"schemas"`
		} `yaml:"components"`
	}
	load := func(name string) (doc, []byte) {
		b, err := os.ReadFile("../docs/" + name)
		if err != nil {
			t.Fatal(err)
		}
		var d doc
		if err := yaml.Unmarshal(b, &d); err != nil {
			t.Fatalf("docs/%s: %v", name, err)
		}
		return d, b
	}
	d, raw := load("vsm-openapi.yaml")
	host, _ := load("openapi.yaml")
	if d.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", d.OpenAPI)
	}
	var documented []string
	for path, item := range d.Paths {
		for method := range item {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	routes := vsm.Routes()
	slices.Sort(documented)
	slices.Sort(routes)
	if diff := cmp.Diff(routes, documented); diff != "" {
		t.Errorf("operations vs routes (-routes +documented):\n%s", diff)
	}

	for name, v := range map[string]any{
		"VSMCLIRequest":  api.VSMCLIRequest{},
		"VSMCLIResponse": api.VSMCLIResponse{},
		"VSMJoinRequest": api.VSMJoinRequest{},
		"VSMModule":      api.VSMModule{},
		"VSMHealth":      vsm.Health{},
	} {
		sch, ok := d.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		rt := reflect.TypeOf(v)
		var want, got []string
		for i := range rt.NumField() {
			tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			want = append(want, tag)
		}
		for p := range sch.Properties {
			got = append(got, p)
		}
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("schema %s vs its type's JSON fields (-type +schema):\n%s", name, diff)
		}
		for _, r := range sch.Required {
			if !slices.Contains(want, r) {
				t.Errorf("schema %s requires %q, which its type lacks", name, r)
			}
		}
	}

	// $refs: "#/components/schemas/X" here, "openapi.yaml#/components/schemas/X" there.
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		_, ref, ok := strings.Cut(line, "$ref: \"")
		if !ok {
			continue
		}
		ref, _, _ = strings.Cut(ref, "\"")
		n++
		file, ptr, _ := strings.Cut(ref, "#")
		kind, name, _ := strings.Cut(strings.TrimPrefix(ptr, "/components/"), "/")
		switch {
		case kind == "responses" && file == "" && name == "Error":
		case kind == "schemas" && file == "":
			if _, ok := d.Components.Schemas[name]; !ok {
				t.Errorf("$ref %q: no such schema", ref)
			}
		case kind == "schemas" && file == "openapi.yaml":
			if _, ok := host.Components.Schemas[name]; !ok {
				t.Errorf("$ref %q: no such schema in docs/openapi.yaml", ref)
			}
		default:
			t.Errorf("$ref %q: not a reference this test knows", ref)
		}
	}
	if n < 10 {
		t.Errorf("found %d $refs, want the document's (10 or more)", n)
	}
}
