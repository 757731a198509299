package vsm_test

import (
	"os"
	"strings"
	"testing"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/openapitest"
	"github.com/flashvisor/flashvisor/vsm"
)

// TestOpenAPI keeps docs/vsm-openapi.yaml true: its operations are the
// routes, its own schemas have exactly their types' JSON fields, and every
// $ref names a schema that exists (here or in docs/openapi.yaml).
func TestOpenAPI(t *testing.T) {
	d := openapitest.Load(t, "../docs/vsm-openapi.yaml")
	host := openapitest.Load(t, "../docs/openapi.yaml")
	d.CheckRoutes(t, vsm.Routes())
	d.CheckSchemas(t, map[string]any{
		"VSMCLIRequest":  api.VSMCLIRequest{},
		"VSMCLIResponse": api.VSMCLIResponse{},
		"VSMJoinRequest": api.VSMJoinRequest{},
		"VSMModule":      api.VSMModule{},
		"VSMHealth":      vsm.Health{},
	})

	// $refs: "#/components/schemas/X" here, "openapi.yaml#/components/schemas/X" there.
	raw, err := os.ReadFile("../docs/vsm-openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
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
