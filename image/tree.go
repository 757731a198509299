package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

type kind uint8

const (
	kindDir kind = iota
	kindFile
	kindLink
	kindCharDev
)

// entry is one path of a package tree or of the image. Modes are normalised
// (0755 for directories and executables, 0644 otherwise) so the build machine's
// umask and dpkg-deb's ownership handling never reach the image.
type entry struct {
	kind kind
	perm uint32
	src  string // file on disk, for package files
	data []byte // content of generated files
	link string // symlink target, as written
	dev  [2]uint32
	pkg  string // package that ships it; "" for generated entries
}

// mergedUsr maps a path to its merged-/usr spelling. Debian 12's .debs still
// ship files under /lib, /bin and /sbin; the image merges them like an
// installed Debian does, with /lib -> usr/lib and friends as symlinks.
func mergedUsr(p string) string {
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib64"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "/usr" + p
		}
	}
	return p
}

// usrLinks are the top-level symlinks of a merged-/usr image.
var usrLinks = map[string]string{"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib", "/lib64": "usr/lib64"}

// index is every path of the extracted packages, in merged-/usr spelling.
type index struct {
	entries  map[string]*entry
	children map[string][]string
}

// newIndex walks the extracted packages (name -> root). When two packages
// ship the same path, the first by name wins, so the result does not depend
// on map order.
func newIndex(roots map[string]string) (*index, error) {
	ix := &index{entries: map[string]*entry{"/": {kind: kindDir, perm: 0o755}}, children: map[string][]string{}}
	names := make([]string, 0, len(roots))
	for n := range roots {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, pkg := range names {
		root := roots[pkg]
		err := filepath.WalkDir(root, func(file string, d fs.DirEntry, err error) error {
			if err != nil || file == root {
				return err
			}
			p := mergedUsr("/" + filepath.ToSlash(strings.TrimPrefix(file, root+"/")))
			e := &entry{pkg: pkg}
			switch {
			case d.IsDir():
				e.kind, e.perm = kindDir, 0o755
			case d.Type()&fs.ModeSymlink != 0:
				e.kind, e.perm = kindLink, 0o777
				if e.link, err = os.Readlink(file); err != nil {
					return err
				}
			case d.Type().IsRegular():
				info, err := d.Info()
				if err != nil {
					return err
				}
				e.kind, e.src, e.perm = kindFile, file, 0o644
				if info.Mode()&0o111 != 0 {
					e.perm = 0o755
				}
			default:
				return nil // no device nodes or fifos in the image's packages
			}
			ix.add(p, e)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", pkg, err)
		}
	}
	for _, c := range ix.children {
		slices.Sort(c)
	}
	return ix, nil
}

func (ix *index) add(p string, e *entry) {
	if _, ok := ix.entries[p]; ok {
		return
	}
	ix.entries[p] = e
	ix.children[path.Dir(p)] = append(ix.children[path.Dir(p)], p)
}

// errNotInPackages is wrapped when a path is in none of the packages.
var errNotInPackages = errors.New("not in the packages")

// resolve follows symlinks (inside the package trees, never the build
// machine's) and returns the final path and the symlinks crossed on the way,
// all of which the image needs.
func (ix *index) resolve(p string) (string, []string, error) {
	var links []string
	rest := strings.Split(path.Clean("/"+p), "/")
	cur := "/"
	for hops := 0; len(rest) > 0; {
		comp := rest[0]
		rest = rest[1:]
		if comp == "" {
			continue
		}
		next := mergedUsr(path.Join(cur, comp))
		e, ok := ix.entries[next]
		if !ok {
			return "", nil, fmt.Errorf("%s: %w", p, errNotInPackages)
		}
		if e.kind != kindLink {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", nil, fmt.Errorf("%s: too many symlinks", p)
		}
		links = append(links, next)
		target := e.link
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(next), target)
		}
		rest = append(strings.Split(path.Clean(target), "/"), rest...)
		cur = "/"
	}
	return cur, links, nil
}

// elfInfo is what the closure needs from an ELF file.
type elfInfo struct {
	needed  []string
	interp  string
	runpath []string
}

// libDirs are the dynamic linker's default directories (merged /usr).
var libDirs = []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"}

// tree is the image being assembled: package paths selected from an index
// plus generated files.
type tree struct {
	ix      *index
	files   map[string]*entry
	exclude []string
	// readELF returns ok=false for files that are not dynamic x86-64 ELF
	// objects; tests replace it with a table.
	readELF func(file string) (info elfInfo, ok bool, err error)
}

func newTree(ix *index, exclude []string) *tree {
	return &tree{ix: ix, files: map[string]*entry{}, exclude: exclude, readELF: readELF}
}

func (t *tree) excluded(p string) bool {
	for _, pat := range t.exclude {
		subject := p
		if !strings.Contains(pat, "/") {
			subject = path.Base(p)
		}
		if ok, _ := path.Match(pat, subject); ok {
			return true
		}
	}
	return false
}

// addGlob adds every package path matching pattern; it must match.
func (t *tree) addGlob(pattern string) error {
	pattern = mergedUsr(pattern)
	if !strings.ContainsAny(pattern, "*?[") {
		return t.addPath(pattern)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", pattern, err)
	}
	var matches []string
	for p := range t.ix.entries {
		if ok, _ := path.Match(pattern, p); ok && !t.excluded(p) {
			matches = append(matches, p)
		}
	}
	if len(matches) == 0 {
		return fmt.Errorf("pattern %q: %w", pattern, errNotInPackages)
	}
	slices.Sort(matches)
	for _, m := range matches {
		if err := t.addPath(m); err != nil {
			return err
		}
	}
	return nil
}

// addPath adds a package path: symlinks with their targets, directories
// recursively (minus excludes), ELF files with their library closure.
func (t *tree) addPath(p string) error {
	final, links, err := t.ix.resolve(p)
	if err != nil {
		return err
	}
	for _, l := range links {
		t.files[l] = t.ix.entries[l]
	}
	if _, done := t.files[final]; done {
		return nil
	}
	e := t.ix.entries[final]
	t.files[final] = e
	switch e.kind {
	case kindDir:
		for _, c := range t.ix.children[final] {
			if t.excluded(c) {
				continue
			}
			if err := t.addPath(c); err != nil {
				return err
			}
		}
	case kindFile:
		if err := t.addLibs(final, e); err != nil {
			return err
		}
	}
	return nil
}

// addLibs adds the interpreter and DT_NEEDED closure of an ELF file, found
// the way ld.so finds them: DT_RUNPATH, then the default directories.
func (t *tree) addLibs(p string, e *entry) error {
	info, ok, err := t.readELF(e.src)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if !ok {
		return nil
	}
	if info.interp != "" {
		if err := t.addPath(info.interp); err != nil {
			return fmt.Errorf("interpreter of %s: %w", p, err)
		}
	}
	dirs := make([]string, 0, len(info.runpath)+len(libDirs))
	for _, d := range info.runpath {
		dirs = append(dirs, strings.ReplaceAll(d, "$ORIGIN", path.Dir(p)))
	}
	dirs = append(dirs, libDirs...)
	for _, lib := range info.needed {
		found := false
		for _, d := range dirs {
			cand := path.Join(d, lib)
			if _, _, err := t.ix.resolve(cand); err != nil {
				continue
			}
			if err := t.addPath(cand); err != nil {
				return err
			}
			found = true
			break
		}
		if !found {
			return fmt.Errorf("%s needs %s: %w", p, lib, errNotInPackages)
		}
	}
	return nil
}

// addData adds a generated file.
func (t *tree) addData(p string, perm uint32, data []byte) {
	t.files[p] = &entry{kind: kindFile, perm: perm, data: data}
}

// packages returns the names of the packages that contribute a file or a
// symlink to the image.
func (t *tree) packages() map[string]bool {
	used := map[string]bool{}
	for _, e := range t.files {
		if e.pkg != "" && e.kind != kindDir {
			used[e.pkg] = true
		}
	}
	return used
}

// complete adds the merged-/usr links and every missing parent directory.
func (t *tree) complete() {
	for l, target := range usrLinks {
		t.files[l] = &entry{kind: kindLink, perm: 0o777, link: target}
	}
	for p := range t.files {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := t.files[d]; ok {
				break
			}
			t.files[d] = &entry{kind: kindDir, perm: 0o755}
		}
	}
}
