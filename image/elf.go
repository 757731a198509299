package image

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"strings"
)

// readELF reports the dynamic dependencies of an x86-64 ELF file; ok is false
// for anything else (data, scripts, other architectures' firmware blobs,
// kernel modules).
func readELF(file string) (elfInfo, bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return elfInfo{}, false, err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte(elf.ELFMAG)) {
		return elfInfo{}, false, nil
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return elfInfo{}, false, fmt.Errorf("parse ELF: %w", err)
	}
	if ef.Machine != elf.EM_X86_64 || (ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN) {
		return elfInfo{}, false, nil
	}
	var info elfInfo
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return elfInfo{}, false, fmt.Errorf("read PT_INTERP: %w", err)
			}
			info.interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	if ef.Section(".dynamic") == nil {
		return info, true, nil // static
	}
	if info.needed, err = ef.ImportedLibraries(); err != nil {
		return elfInfo{}, false, fmt.Errorf("read DT_NEEDED: %w", err)
	}
	rp, err := ef.DynString(elf.DT_RUNPATH)
	if err != nil {
		return elfInfo{}, false, fmt.Errorf("read DT_RUNPATH: %w", err)
	}
	for _, s := range rp {
		info.runpath = append(info.runpath, strings.Split(s, ":")...)
	}
	return info, true, nil
}
