// Package openapitest keeps an OpenAPI document under docs/ true to the
// code: the operations it lists against the routes registered, and its
// schemas against the Go types they describe (hostd's docs/openapi.yaml,
// the VSM's docs/vsm-openapi.yaml).
package openapitest

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// Schema is the part of a schema the checks read.
type Schema struct {
	Required   []string             `yaml:"required"`
	Properties map[string]yaml.Node `yaml:"properties"`
}

// Doc is the part of an OpenAPI document the checks read.
type Doc struct {
	OpenAPI    string                          `yaml:"openapi"`
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		Schemas map[string]Schema `yaml:"schemas"`
	} `yaml:"components"`
}

// Load reads and decodes the document at path; it must be OpenAPI 3.0.3.
func Load(t testing.TB, path string) Doc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d Doc
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.OpenAPI != "3.0.3" {
		t.Errorf("%s: openapi = %q, want 3.0.3", path, d.OpenAPI)
	}
	return d
}

// Operations lists the document's operations as "METHOD /path" (the
// form of Go 1.22 mux patterns).
func (d Doc) Operations() []string {
	var out []string
	for path, item := range d.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				out = append(out, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// CheckRoutes fails t unless the document's operations are exactly routes.
func (d Doc) CheckRoutes(t testing.TB, routes []string) {
	t.Helper()
	routes = slices.Sorted(slices.Values(routes))
	if diff := cmp.Diff(routes, d.Operations()); diff != "" {
		t.Errorf("documented operations vs registered routes (-registered +documented):\n%s", diff)
	}
}

// CheckSchemas fails t unless each named schema's properties are exactly
// its value's JSON fields and it requires none the type lacks.
func (d Doc) CheckSchemas(t testing.TB, types map[string]any) {
	t.Helper()
	for name, v := range types {
		sch, ok := d.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		want := JSONFields(reflect.TypeOf(v))
		var got []string
		for p := range sch.Properties {
			got = append(got, p)
		}
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("schema %s properties vs %T's JSON fields (-type +schema):\n%s", name, v, diff)
		}
		for _, r := range sch.Required {
			if !slices.Contains(want, r) {
				t.Errorf("schema %s requires %q, which %T lacks", name, r, v)
			}
		}
	}
}

// JSONFields lists a struct's JSON field names, with those of embedded
// structs inlined as encoding/json does.
func JSONFields(rt reflect.Type) []string {
	var out []string
	for i := range rt.NumField() {
		f := rt.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" {
			out = append(out, JSONFields(f.Type)...)
			continue
		}
		out = append(out, tag)
	}
	return out
}
