package guest

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
)

// ErrNoDisk means the VM has no disk "write" and "read" could use.
var ErrNoDisk = errors.New("no disk")

// diskClasses are the whole-disk names in /sys/block, in the order the
// guest prefers them: virtio-blk, SCSI (virtio-scsi, LSI), NVMe.
var diskClasses = []*regexp.Regexp{
	regexp.MustCompile(`^vd[a-z]+$`),
	regexp.MustCompile(`^sd[a-z]+$`),
	regexp.MustCompile(`^nvme[0-9]+n[0-9]+$`),
}

// FirstDisk picks the first disk among the names in /sys/block: the first
// class of diskClasses that has one, then vda before vdb before vdaa.
// CD-ROMs (sr*), loop and RAM devices are never picked.
func FirstDisk(names []string) (string, error) {
	for _, re := range diskClasses {
		var found []string
		for _, n := range names {
			if re.MatchString(n) {
				found = append(found, n)
			}
		}
		if len(found) > 0 {
			slices.SortFunc(found, func(a, b string) int {
				return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
			})
			return "/dev/" + found[0], nil
		}
	}
	return "", ErrNoDisk
}

// WriteRecord writes text as a record at offset 0 of dev and waits until
// the device has it (fsync), so that a snapshot or a power-off right after
// the answer keeps it.
func WriteRecord(dev, text string) (int, error) {
	b, err := EncodeRecord(text)
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return 0, fmt.Errorf("write %s: %w", dev, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, fmt.Errorf("fsync %s: %w", dev, err)
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return len(text), nil
}

// ReadRecord reads the record at offset 0 of dev (ErrNoRecord when there is
// none).
func ReadRecord(dev string) (string, error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, RecordMax)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", dev, err)
	}
	return DecodeRecord(b[:n])
}
