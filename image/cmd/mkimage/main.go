// Command mkimage builds Flashvisor images and refreshes their package pins.
//
//	mkimage build -profile host|guest|bench [-out out/PROFILE] -cache out/cache [-version V]
//	mkimage lock -profile host|guest|bench [-cache out/cache]
//
// bench is the host image plus Open vSwitch, for fvbench -only vem.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/flashvisor/flashvisor/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "build" && args[0] != "lock") {
		return errors.New("usage: mkimage build|lock -profile NAME [flags]")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("mkimage "+cmd, flag.ContinueOnError)
	profile := fs.String("profile", "host", "image profile: host, vsm, guest or bench (the host plus Open vSwitch)")
	out := fs.String("out", "", "output directory (build; default out/PROFILE)")
	cache := fs.String("cache", "out/cache", "download and extraction cache, shared between builds")
	version := fs.String("version", "dev", "Flashvisor version recorded in the manifest (build)")
	repo := fs.String("repo", ".", "repository root")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	p, ok := image.Profiles()[*profile]
	if !ok {
		return fmt.Errorf("unknown profile %q", *profile)
	}
	if *out == "" {
		// Per profile, so that building the guest never overwrites the host.
		*out = filepath.Join("out", p.Name)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	o := image.Options{Profile: p, Repo: *repo, Cache: image.Cache{Dir: *cache, Log: log}, Version: *version, Log: log}
	start := time.Now()
	if cmd == "lock" {
		l, err := image.WriteLock(ctx, o)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d packages pinned in %s\n", p.Lock, len(l.Pins), time.Since(start).Round(time.Millisecond))
		return nil
	}
	res, err := image.Build(ctx, o, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "profile %s, kernel %s, %d modules, %d initramfs entries, initramfs %.1f MiB uncompressed\n",
		p.Name, res.Manifest.Kernel, res.Modules, res.Files, float64(res.InitrdBytes)/(1<<20))
	for _, o := range res.Manifest.Outputs {
		fmt.Fprintf(stdout, "%s/%s\t%.1f MiB\t%s\n", *out, o.Name, float64(o.Size)/(1<<20), o.SHA256)
	}
	fmt.Fprintf(stdout, "built in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}
