package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tether-ecs/tether/internal/volspec"
)

// record is what Create keeps in <root>/plugin/NAME.json: the Docker
// volume's name and driverOpts as given. It is bookkeeping for Get and List
// only; the EBS volume is the reconciler's (it reads the same options from
// the task definition).
type record struct {
	Name       string            `json:"name"`
	DriverOpts map[string]string `json:"driverOpts,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
}

const recordSuffix = ".json"

func (d *Driver) recordPath(name string) string {
	return filepath.Join(d.root, "plugin", name+recordSuffix)
}

// readRecord returns the record of a validated name; ok is false when there
// is none.
func (d *Driver) readRecord(name string) (rec record, ok bool, err error) {
	b, err := os.ReadFile(d.recordPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("reading the record of volume %q: %w", name, err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return record{}, false, fmt.Errorf("record %s is corrupt: %w", d.recordPath(name), err)
	}
	if rec.Name != name {
		return record{}, false, fmt.Errorf("record %s names volume %q", d.recordPath(name), rec.Name)
	}
	return rec, true, nil
}

// writeRecord replaces the record atomically: a crash leaves the old record
// or the new one, never half of one.
func (d *Driver) writeRecord(rec record) error {
	dir := filepath.Dir(d.recordPath(rec.Name))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+rec.Name+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), d.recordPath(rec.Name)); err != nil {
		return err
	}
	return syncDir(dir)
}

func (d *Driver) removeRecord(name string) error {
	err := os.Remove(d.recordPath(name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(d.recordPath(name)))
}

// listRecords returns every record, sorted by name. A file that is not a
// valid record (a stray temp file, a bad name) is skipped and logged.
func (d *Driver) listRecords() ([]record, error) {
	entries, err := os.ReadDir(filepath.Join(d.root, "plugin"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []record
	for _, e := range entries {
		name, isRecord := strings.CutSuffix(e.Name(), recordSuffix)
		if !isRecord || !e.Type().IsRegular() || volspec.ValidateName(name) != nil {
			continue
		}
		rec, ok, err := d.readRecord(name)
		if err != nil {
			d.log.Warn("skipping unreadable plugin record", "volume", name, "error", err.Error())
			continue
		}
		if ok {
			out = append(out, rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
