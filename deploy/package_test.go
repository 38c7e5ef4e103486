// Package deploy holds the tests of what deploy/ ships: the Debian
// package, installed and started in a clean container.
package deploy

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// baseImage is a clean Debian (`make images` builds it: images/debian).
const baseImage = "ars-lab/debian:latest"

func needImage(t *testing.T) {
	t.Helper()
	skip := func(why string) {
		if os.Getenv("ARS_REQUIRE_IMAGES") != "" {
			t.Fatalf("ARS_REQUIRE_IMAGES is set but %s", why)
		}
		t.Skip(why)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		skip("no docker CLI")
	}
	if out, err := exec.Command("docker", "image", "inspect", baseImage).CombinedOutput(); err != nil {
		skip(baseImage + " is not built (make images): " + strings.TrimSpace(string(out)))
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		skip("no dpkg-deb")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestDebInstallsAndRuns builds the package as `make deb` does, installs
// it with dpkg in a clean Debian container (no network), and checks what
// it put in place: the binary, the unit, the system user and its
// directories, the completions; then starts `ars agent -dev` from it as
// the ars user and asks it for its status with the installed CLI.
func TestDebInstallsAndRuns(t *testing.T) {
	needImage(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "ars")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v0.0.0-test", "-o", bin, "../cmd/ars")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	deb := run(t, "./deb/build.sh", bin, "v0.0.0-test", dir)
	if !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("build.sh printed %q", deb)
	}
	info := run(t, "dpkg-deb", "--field", deb, "Package", "Version", "Depends")
	for _, want := range []string{"Package: ars", "Version: 0.0.0+test", "Depends: adduser"} {
		if !strings.Contains(info, want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}

	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "ars-debtest-" + hex.EncodeToString(b[:])
	run(t, "docker", "run", "-d", "--rm", "--network", "none", "--name", name,
		"-v", dir+":/pkg:ro", baseImage, "sleep", "300")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	in := func(args ...string) string { return run(t, "docker", append([]string{"exec", name}, args...)...) }

	in("dpkg", "-i", "/pkg/"+filepath.Base(deb))
	for path, want := range map[string]string{
		"/usr/bin/ars":                    "root root 755",
		"/lib/systemd/system/ars.service": "root root 644",
		"/etc/ars":                        "root ars 750",
		"/var/lib/ars":                    "ars ars 700",
		"/usr/share/bash-completion/completions/ars": "root root 644",
		"/usr/share/zsh/vendor-completions/_ars":     "root root 644",
		"/usr/share/doc/ars/copyright":               "root root 644", // the image's dpkg drops the rest of /usr/share/doc
	} {
		if got := in("stat", "-c", "%U %G %a", path); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	if got := in("getent", "passwd", "ars"); !strings.Contains(got, ":/var/lib/ars:/usr/sbin/nologin") {
		t.Errorf("the ars user: %q, want a system user with home /var/lib/ars and no login shell", got)
	}
	if unit := in("cat", "/lib/systemd/system/ars.service"); !strings.Contains(unit, "ExecStart=/usr/bin/ars agent -config /etc/ars/agent.yaml") || !strings.Contains(unit, "User=ars") {
		t.Errorf("the unit does not start the packaged binary as ars:\n%s", unit)
	}
	if v := in("ars", "version"); !strings.HasPrefix(v, "ars v0.0.0-test ") {
		t.Errorf("ars version: %q", v)
	}

	// The node, as its user, from the packaged binary.
	run(t, "docker", "exec", "-d", name, "setpriv", "--reuid", "ars", "--regid", "ars", "--init-groups",
		"sh", "-c", "exec /usr/bin/ars agent -dev > /tmp/agent.log 2>&1")
	var st struct {
		State, Mode, Leader string
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("docker", "exec", "-e", "ARS_HTTP_ADDR=http://127.0.0.1:7500", name,
			"ars", "status", "-o", "json").CombinedOutput()
		if err == nil && json.Unmarshal(out, &st) == nil && st.State == "leader" {
			break
		}
		if time.Now().After(deadline) {
			log, _ := exec.Command("docker", "exec", name, "cat", "/tmp/agent.log").CombinedOutput()
			t.Fatalf("the installed agent did not lead within 30 s: %v %s\nagent log:\n%s", err, out, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	owner := in("sh", "-c", `for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = ars ] && stat -c %U $d; done; true`)
	if owner != "ars" {
		t.Errorf("the agent runs as %q, want ars", owner)
	}
	in("dpkg", "-r", "ars")
	if out, err := exec.Command("docker", "exec", name, "test", "-e", "/usr/bin/ars").CombinedOutput(); err == nil {
		t.Errorf("dpkg -r left /usr/bin/ars: %s", out)
	}
}

// TestControllerImage: the controller image `make images` builds runs
// the node binary and nothing else — no shell to exec into.
func TestControllerImage(t *testing.T) {
	const image = "ars/ars:latest"
	if out, err := exec.Command("docker", "image", "inspect", image).CombinedOutput(); err != nil {
		if os.Getenv("ARS_REQUIRE_IMAGES") != "" {
			t.Fatalf("ARS_REQUIRE_IMAGES is set but %s is not built: %s", image, out)
		}
		t.Skipf("%s is not built (make images)", image)
	}
	if v := run(t, "docker", "run", "--rm", "--network", "none", image, "version"); !strings.HasPrefix(v, "ars ") {
		t.Fatalf("ars version in the image: %q", v)
	}
	files := run(t, "docker", "image", "inspect", "-f", "{{json .Config.Entrypoint}} {{json .Config.Cmd}}", image)
	if files != `["/ars"] ["agent","-config","/etc/ars/agent.yaml"]` {
		t.Errorf("entrypoint and command: %s", files)
	}
	if out, err := exec.Command("docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", "true").CombinedOutput(); err == nil {
		t.Errorf("the image has a shell: %s", out)
	}
}
