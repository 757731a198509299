package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/flashvisor/flashvisor/api"
	"github.com/flashvisor/flashvisor/internal/layout"
)

// ModulesLoadFile lists the modules init loads at boot whatever the hardware,
// one name per line, '#' comments.
const ModulesLoadFile = layout.EtcDir + "/modules.load"

// Options are the inputs of Build and WriteLock besides the profile's data.
type Options struct {
	Profile Profile
	Repo    string // repository root: Go programs and the lock file
	Cache   Cache
	Version string // Flashvisor version recorded in the manifest
	Log     *slog.Logger
}

// Result describes a built image.
type Result struct {
	Manifest    api.Manifest
	Modules     int   // loadable modules shipped
	Files       int   // initramfs entries
	InitrdBytes int64 // uncompressed cpio size
}

// kernel is the kernel found in the packages.
type kernel struct {
	release string
	vmlinuz string // file on disk
}

// assemble selects everything the profile wants from the packages. It needs
// no Go toolchain, so WriteLock uses it to learn which packages matter.
func assemble(p Profile, ix *index) (*tree, kernel, int, error) {
	t := newTree(ix, p.Exclude)
	var k kernel
	for path, e := range ix.entries {
		if rel, ok := strings.CutPrefix(path, "/boot/vmlinuz-"); ok {
			if k.release != "" {
				return nil, kernel{}, 0, fmt.Errorf("two kernels in the packages: %s and %s", k.release, rel)
			}
			k = kernel{release: rel, vmlinuz: e.src}
		}
	}
	if k.release == "" {
		return nil, kernel{}, 0, errors.New("no /boot/vmlinuz-* in the packages")
	}
	if cfg, ok := ix.entries["/boot/config-"+k.release]; ok {
		b, err := os.ReadFile(cfg.src)
		if err != nil {
			return nil, kernel{}, 0, err
		}
		if !bytes.Contains(b, []byte("\nCONFIG_RD_ZSTD=y\n")) {
			return nil, kernel{}, 0, fmt.Errorf("kernel %s cannot unpack a zstd initramfs (CONFIG_RD_ZSTD)", k.release)
		}
	}
	n, err := addModules(t, p, "/usr/lib/modules/"+k.release)
	if err != nil {
		return nil, kernel{}, 0, err
	}
	for _, g := range p.Paths {
		if err := t.addGlob(g); err != nil {
			return nil, kernel{}, 0, err
		}
	}
	for _, fw := range p.Firmware {
		if err := t.addGlob("/usr/lib/firmware/" + fw); err != nil {
			return nil, kernel{}, 0, err
		}
	}
	services, err := json.MarshalIndent(p.Services, "", "  ")
	if err != nil {
		return nil, kernel{}, 0, err
	}
	t.addData(layout.ServicesFile, 0o644, append(services, '\n'))
	t.addData(ModulesLoadFile, 0o644, []byte("# Loaded by init at boot whatever the hardware.\n"+strings.Join(p.ModulesLoad, "\n")+"\n"))
	t.addData("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	t.addData("/etc/group", 0o644, []byte("root:x:0:\n"))
	for d, perm := range map[string]uint32{"/proc": 0o755, "/sys": 0o755, "/dev": 0o755, "/run": 0o755,
		"/tmp": 0o1777, "/mnt": 0o755, "/root": 0o700, layout.StateDir: 0o755} {
		t.files[d] = &entry{kind: kindDir, perm: perm}
	}
	// The kernel runs /sbin/modprobe for request_module() (fs-*, crypto-*,
	// nft-*): init answers to that name.
	t.files["/usr/sbin/modprobe"] = &entry{kind: kindLink, perm: 0o777, link: "/init"}
	// The kernel opens /dev/console for PID 1 before devtmpfs is mounted.
	t.files["/dev/console"] = &entry{kind: kindCharDev, perm: 0o600, dev: [2]uint32{5, 1}}
	return t, k, n, nil
}

// addModules adds the profile's modules with their closure and writes the
// module index files for exactly that set.
func addModules(t *tree, p Profile, dir string) (int, error) {
	km, err := scanModules(t.ix, dir)
	if err != nil {
		return 0, err
	}
	ship, err := moduleClosure(func(n string) ([]string, bool) {
		m, ok := km.mods[n]
		if !ok {
			return nil, false
		}
		return append(slices.Clone(m.depends), m.soft...), true
	}, km.builtin, p.Modules, p.OptionalModules)
	if err != nil {
		return 0, err
	}
	shipped := map[string]bool{}
	for _, n := range ship {
		shipped[n] = true
		t.files[dir+"/"+km.mods[n].rel] = t.ix.entries[dir+"/"+km.mods[n].rel]
	}
	for _, n := range p.ModulesLoad {
		if !shipped[modName(n)] && !km.builtin[modName(n)] {
			return 0, fmt.Errorf("modules.load names %s, which the profile does not ship", n)
		}
	}
	var order []byte
	if e, ok := t.ix.entries[dir+"/modules.order"]; ok {
		if order, err = os.ReadFile(e.src); err != nil {
			return 0, err
		}
	}
	for name, data := range km.depFiles(ship, order) {
		t.addData(dir+"/"+name, 0o644, data)
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo"} {
		if err := t.addPath(dir + "/" + f); err != nil {
			return 0, err
		}
	}
	return len(ship), nil
}

// prepare fetches, verifies and extracts the pins and indexes them.
func prepare(ctx context.Context, c Cache, pins []Pin) (*index, error) {
	if err := c.Fetch(ctx, pins); err != nil {
		return nil, err
	}
	roots, err := c.Extract(ctx, pins)
	if err != nil {
		return nil, err
	}
	return newIndex(roots)
}

// ReadLock reads the profile's pin file.
func ReadLock(file string) (Lock, error) {
	f, err := os.Open(file)
	if err != nil {
		return Lock{}, fmt.Errorf("%w (generate it with `make lock`)", err)
	}
	defer f.Close()
	l, err := ParseLock(f)
	if err != nil {
		return Lock{}, fmt.Errorf("%s: %w", file, err)
	}
	return l, nil
}

// Build writes vmlinuz, initrd.img and manifest.json into out, from the
// pinned packages only.
func Build(ctx context.Context, o Options, out string) (Result, error) {
	lock, err := ReadLock(filepath.Join(o.Repo, o.Profile.Lock))
	if err != nil {
		return Result{}, err
	}
	ix, err := prepare(ctx, o.Cache, lock.Pins)
	if err != nil {
		return Result{}, err
	}
	t, k, nmods, err := assemble(o.Profile, ix)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return Result{}, err
	}
	tmp, err := os.MkdirTemp(out, ".build-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(tmp)

	o.Log.Info("building Go programs", "count", len(o.Profile.Programs))
	bins, goVersion, err := buildPrograms(ctx, o.Repo, tmp, o.Profile.Programs)
	if err != nil {
		return Result{}, err
	}
	m := api.Manifest{Profile: o.Profile.Name, Version: o.Version, Kernel: k.release}
	for _, p := range lock.Pins {
		m.Inputs = append(m.Inputs, api.ManifestInput{Kind: "deb", Name: p.Name, Version: p.Version, SHA256: p.SHA256})
	}
	m.Inputs = append(m.Inputs, api.ManifestInput{Kind: "go", Name: "go", Version: goVersion})
	for _, p := range o.Profile.Programs {
		sum, _, err := hashFile(bins[p.Dest])
		if err != nil {
			return Result{}, err
		}
		m.Inputs = append(m.Inputs, api.ManifestInput{Kind: "go", Name: p.Pkg, Version: o.Version, SHA256: sum})
		t.files[p.Dest] = &entry{kind: kindFile, perm: 0o755, src: bins[p.Dest]}
	}
	embedded, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Result{}, err
	}
	t.addData(layout.ManifestFile, 0o644, append(embedded, '\n'))
	t.addData("/etc/os-release", 0o644, []byte(fmt.Sprintf(
		"NAME=Flashvisor\nID=flashvisor\nVERSION_ID=%q\nPRETTY_NAME=\"Flashvisor %s\"\nVARIANT_ID=%s\n",
		o.Version, o.Version, o.Profile.Name)))
	t.complete()

	res := Result{Modules: nmods, Files: len(t.files)}
	if err := writeOutput(filepath.Join(out, "initrd.img"), func(w io.Writer) error {
		res.InitrdBytes, err = writeInitramfs(w, t.files)
		return err
	}); err != nil {
		return Result{}, err
	}
	if err := writeOutput(filepath.Join(out, "vmlinuz"), func(w io.Writer) error {
		f, err := os.Open(k.vmlinuz)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}); err != nil {
		return Result{}, err
	}
	for _, name := range []string{"vmlinuz", "initrd.img"} {
		sum, size, err := hashFile(filepath.Join(out, name))
		if err != nil {
			return Result{}, err
		}
		m.Outputs = append(m.Outputs, api.ManifestOutput{Name: name, Size: size, SHA256: sum})
	}
	beside, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Result{}, err
	}
	if err := writeOutput(filepath.Join(out, "manifest.json"), func(w io.Writer) error {
		_, err := w.Write(append(beside, '\n'))
		return err
	}); err != nil {
		return Result{}, err
	}
	res.Manifest = m
	return res, nil
}

// writeOutput writes a file through a temporary name so a failed build never
// leaves a truncated output that looks complete.
func writeOutput(file string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(file), ".tmp-"+filepath.Base(file))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), file)
}

func hashFile(file string) (string, int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// WriteLock pins the candidate versions of the profile's packages: the
// concrete kernel package, and the roots' recursive Depends that contribute
// at least one file to the image. It downloads and extracts them to find out.
func WriteLock(ctx context.Context, o Options) (Lock, error) {
	p := o.Profile
	kpkg, err := aptMetaTarget(ctx, p.Kernel)
	if err != nil {
		return Lock{}, err
	}
	var names []string
	if len(p.Packages) > 0 {
		// apt-cache depends without a package name fails.
		if names, err = aptDepends(ctx, p.Packages); err != nil {
			return Lock{}, err
		}
	}
	cands, err := aptShow(ctx, append([]string{kpkg}, names...))
	if err != nil {
		return Lock{}, err
	}
	o.Log.Info("resolved candidates", "kernel", kpkg, "packages", len(cands))
	ix, err := prepare(ctx, o.Cache, cands)
	if err != nil {
		return Lock{}, err
	}
	t, _, _, err := assemble(p, ix)
	if err != nil {
		return Lock{}, err
	}
	used := t.packages()
	var lock Lock
	for _, c := range cands {
		if used[c.Name] {
			lock.Pins = append(lock.Pins, c)
		}
	}
	header := fmt.Sprintf("Debian packages of the %s image: name version arch size sha256.\n"+
		"Generated by `mkimage lock -profile %s` (make lock) from apt's candidate versions;\n"+
		"only packages that contribute files are listed. Do not edit by hand.", p.Name, p.Name)
	file := filepath.Join(o.Repo, p.Lock)
	if err := writeOutput(file, func(w io.Writer) error {
		_, err := w.Write(lock.Format(header))
		return err
	}); err != nil {
		return Lock{}, err
	}
	return lock, nil
}
