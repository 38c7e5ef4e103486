package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Names of the files Write creates.
const (
	JSONFile  = "latest.json"
	ChartFile = "latest.png"
	TableFile = "latest.md"
)

// File is the content of latest.json: the results and optional metadata
// about the run that produced them.
type File struct {
	Machine string    `json:"machine,omitempty"` // host the benchmark ran on
	Started time.Time `json:"started,omitzero"`  // when the run started
	Go      string    `json:"go,omitempty"`      // Go version of the runner
	Command string    `json:"command,omitempty"` // command line of the run
	// LoadStart and LoadEnd are the machine's load averages (1, 5 and
	// 15 minutes) when the run started and when it ended: a busy machine
	// shows in them.
	LoadStart string   `json:"load_start,omitempty"`
	LoadEnd   string   `json:"load_end,omitempty"`
	Scenarios []Result `json:"scenarios"`
}

// Validate checks every result and that no scenario × mode × profile
// appears twice.
func (f File) Validate() error {
	type key struct{ profile, name, mode string }
	seen := make(map[key]int, len(f.Scenarios))
	for i, r := range f.Scenarios {
		if err := r.Validate(); err != nil {
			return err
		}
		k := key{r.Profile, r.Name, r.Mode}
		if j, ok := seen[k]; ok {
			return fmt.Errorf("bench: scenarios[%d] and [%d]: %s: %w", j, i, r.key(), ErrDuplicate)
		}
		seen[k] = i
	}
	return nil
}

// Write validates f and writes latest.json (indented, results sorted by
// profile, scenario name and mode), latest.png (see Chart) and latest.md
// (see Markdown) into dir, creating dir if needed. Each file is replaced
// atomically.
func Write(dir string, f File) error {
	if err := f.Validate(); err != nil {
		return err
	}
	f.Scenarios = sorted(f.Scenarios)
	js, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode: %w", err)
	}
	png, err := Chart(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for _, out := range []struct {
		name string
		data []byte
	}{
		{JSONFile, append(js, '\n')},
		{ChartFile, png},
		{TableFile, []byte(Markdown(f))},
	} {
		if err := writeFile(filepath.Join(dir, out.name), out.data); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

// writeFile writes data to a temporary file next to path and renames it.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Read reads and validates a result file written by Write.
func Read(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("bench: %w", err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return File{}, fmt.Errorf("bench: decode %s: %w", path, err)
	}
	if err := f.Validate(); err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
