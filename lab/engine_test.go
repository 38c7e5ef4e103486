package lab

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/var/lib/docker/x/merged`: "/var/lib/docker/x/merged",
		`/mnt/with\040space`:       "/mnt/with space",
		`/mnt/tab\011and\134`:      "/mnt/tab\tand\\",
		`/mnt/trailing\04`:         `/mnt/trailing\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUnmountLeaked: every mount below the engine's data root goes,
// nested ones first; mounts elsewhere (the root itself, a sibling with
// the root as a name prefix) stay.
func TestUnmountLeaked(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root; CI runs this as root")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "docker")
	inner := filepath.Join(root, "a b", "merged")
	nested := filepath.Join(inner, "proc")
	sibling := filepath.Join(dir, "docker2")
	for _, d := range []string{inner, sibling} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount := func(at string) {
		t.Helper()
		if err := syscall.Mount("tmpfs", at, "tmpfs", 0, "size=64k"); err != nil {
			t.Fatalf("mount %s: %v", at, err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(at, syscall.MNT_DETACH) })
	}
	mount(root)
	if err := os.MkdirAll(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	mount(inner)
	if err := os.Mkdir(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	mount(nested)
	mount(sibling)

	done, err := unmountLeaked("/proc/self/mountinfo", root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{nested, inner}; !slices.Equal(done, want) {
		t.Fatalf("unmounted %q, want %q (deepest first)", done, want)
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var still []string
	for _, mp := range []string{root, inner, nested, sibling} {
		if mounted(string(b), mp) {
			still = append(still, mp)
		}
	}
	if want := []string{root, sibling}; !slices.Equal(still, want) {
		t.Fatalf("still mounted %q, want %q", still, want)
	}
}

func mounted(mountinfo, mp string) bool {
	for line := range strings.Lines(mountinfo) {
		if f := strings.Fields(line); len(f) > 4 && unescapeMount(f[4]) == mp {
			return true
		}
	}
	return false
}
