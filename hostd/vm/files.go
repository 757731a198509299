package vm

import (
	"io"
	"os"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/hostd/vmconfig"
)

func saveSpecFile(path string, spec api.VMSpec) error { return vmconfig.Save(path, spec) }

// copyFile copies src to dst (the UEFI variable template to a VM's NVRAM).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}
