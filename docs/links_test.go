// Package docs holds the project's documentation pages. Its only Go file is
// this test, which checks the links of every Markdown file in the
// repository.
package docs

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// forbidden is a path prefix that points out of the repository to a
// sibling directory of the working copy. No file may mention it: the
// repository must stand on its own. (Spelled in two parts so that this
// file does not contain it.)
var forbidden = "../" + "shared"

// TestLinks walks every Markdown file of the repository and fails for each
// relative link whose target file does not exist, leaves the repository,
// or names an anchor (#...) that no heading of the target has. Pure
// anchors (#...) are checked against the headings of the same file.
// Links with a scheme (https:, mailto:, ...) are not followed.
func TestLinks(t *testing.T) {
	root := repoRoot(t)
	files := markdownFiles(t, root)
	if len(files) == 0 {
		t.Fatal("no Markdown files found under " + root)
	}
	anchors := map[string]map[string]bool{} // file -> anchors, read on demand
	anchorsOf := func(path string) (map[string]bool, error) {
		if a, ok := anchors[path]; ok {
			return a, nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		a := headingAnchors(string(data))
		anchors[path] = a
		return a, nil
	}

	var problems []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, file)
		for _, l := range extractLinks(string(data)) {
			if msg := checkLink(root, file, l, anchorsOf); msg != "" {
				problems = append(problems, fmt.Sprintf("%s:%d: (%s): %s", filepath.ToSlash(rel), l.line, l.dest, msg))
			}
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.Logf("%d broken link(s) in %d Markdown file(s)", len(problems), len(files))
	}
}

// TestNoPathOutOfTheRepository fails for every file that mentions the
// forbidden sibling directory, in a link or in plain text.
func TestNoPathOutOfTheRepository(t *testing.T) {
	root := repoRoot(t)
	err := walkRepo(root, func(path string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.IndexByte(data, 0) >= 0 { // binary (an image)
			return nil
		}
		for i, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, forbidden) {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d: mentions %s, which is outside the repository", filepath.ToSlash(rel), i+1, forbidden)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// repoRoot walks up from the test's directory to the one holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// walkRepo calls fn for every regular file of the repository, skipping
// .git, the build output (bin/ at the root), vendor/ directories and
// testdata/ directories (golden files are program output, not pages).
func walkRepo(root string, fn func(path string) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == ".git" || name == "vendor" || name == "testdata" ||
				name == "bin" && filepath.Dir(path) == root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return fn(path)
	})
}

func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := walkRepo(root, func(path string) error {
		if strings.EqualFold(filepath.Ext(path), ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// link is one link found in a Markdown file.
type link struct {
	dest string
	line int
}

var (
	// inlineLink matches [text](dest) and ![alt](dest), with an optional
	// title; the text may hold one level of brackets and line breaks.
	inlineLink = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^<>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:"[^"]*"|'[^']*'|\([^()]*\)))?\s*\)`)
	// refDef matches a reference definition: [label]: dest.
	refDef = regexp.MustCompile(`(?m)^ {0,3}\[[^\]]+\]:\s*(<[^<>\n]*>|\S+)`)
	// scheme matches a URL scheme (https:, mailto:, ...).
	scheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
)

// extractLinks returns the link destinations of a Markdown text, outside
// fenced code blocks and code spans.
func extractLinks(text string) []link {
	masked, _ := maskCode(text)
	var out []link
	add := func(dest string, off int) {
		dest = strings.TrimSuffix(strings.TrimPrefix(dest, "<"), ">")
		out = append(out, link{dest: dest, line: 1 + strings.Count(masked[:off], "\n")})
	}
	for _, m := range inlineLink.FindAllStringSubmatchIndex(masked, -1) {
		if m[0] > 0 && masked[m[0]-1] == '\\' { // \[ is not a link
			continue
		}
		add(masked[m[4]:m[5]], m[4])
	}
	for _, m := range refDef.FindAllStringSubmatchIndex(masked, -1) {
		add(masked[m[2]:m[3]], m[2])
	}
	return out
}

// maskCode replaces the contents of fenced code blocks and code spans by
// spaces, keeping line breaks, so that offsets stay those of the text. It
// also reports which lines belong to a fenced block (fences included).
func maskCode(text string) (string, []bool) {
	b := []byte(text)
	lines := strings.SplitAfter(text, "\n")
	fenced := make([]bool, len(lines))
	off := 0
	fence := ""
	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		switch {
		case fence == "" && indent < 4 && fenceOf(trimmed) != "":
			fence = fenceOf(trimmed)
			fenced[i] = true
		case fence == "":
			maskSpans(b, off, off+len(line))
		default:
			if f := fenceOf(trimmed); f != "" && f[0] == fence[0] && len(f) >= len(fence) &&
				strings.TrimSpace(trimmed[len(f):]) == "" {
				fence = ""
			}
			fenced[i] = true
		}
		if fenced[i] {
			blank(b, off, off+len(line))
		}
		off += len(line)
	}
	return string(b), fenced
}

// fenceOf returns the run of ``` or ~~~ (three or more) a line starts with.
func fenceOf(s string) string {
	for _, c := range []byte{'`', '~'} {
		n := 0
		for n < len(s) && s[n] == c {
			n++
		}
		if n >= 3 {
			return s[:n]
		}
	}
	return ""
}

// maskSpans blanks the code spans of b[from:to] (one line): a run of n
// backticks up to the next run of exactly n.
func maskSpans(b []byte, from, to int) {
	for i := from; i < to; {
		if b[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < to && b[i+n] == '`' {
			n++
		}
		closeAt := -1
		for j := i + n; j < to; {
			if b[j] != '`' {
				j++
				continue
			}
			m := 0
			for j+m < to && b[j+m] == '`' {
				m++
			}
			if m == n {
				closeAt = j
				break
			}
			j += m
		}
		if closeAt < 0 {
			i += n
			continue
		}
		blank(b, i, closeAt+n)
		i = closeAt + n
	}
}

func blank(b []byte, from, to int) {
	for i := from; i < to; i++ {
		if b[i] != '\n' {
			b[i] = ' '
		}
	}
}

// checkLink returns why l, found in file, is broken, or "".
func checkLink(root, file string, l link, anchorsOf func(string) (map[string]bool, error)) string {
	dest := l.dest
	if dest == "" {
		return "empty link"
	}
	if scheme.MatchString(dest) || strings.HasPrefix(dest, "//") {
		return "" // not a path in the repository
	}
	path, anchor, _ := strings.Cut(dest, "#")
	if p, err := url.PathUnescape(path); err == nil {
		path = p
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	target := file
	if path != "" {
		if strings.HasPrefix(path, "/") {
			target = filepath.Join(root, filepath.FromSlash(path))
		} else {
			target = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
		}
		if rel, err := filepath.Rel(root, target); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return "target is outside the repository"
		}
		fi, err := os.Stat(target)
		if err != nil {
			return "no such file or directory"
		}
		if fi.IsDir() {
			if anchor != "" {
				return "anchor on a directory"
			}
			return ""
		}
	}
	if anchor == "" || !strings.EqualFold(filepath.Ext(target), ".md") {
		return ""
	}
	a, err := anchorsOf(target)
	if err != nil {
		return err.Error()
	}
	if !a[strings.ToLower(anchor)] {
		return fmt.Sprintf("no heading with anchor #%s in %s", anchor, filepath.Base(target))
	}
	return ""
}

var (
	atxHeading = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)
	setextLine = regexp.MustCompile(`^ {0,3}(=+|-+)[ \t]*$`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:[^>]*\s)?(?:id|name)="([^"]+)"`)
)

// headingAnchors returns the anchors GitHub makes for the headings of a
// Markdown text (ATX "# ..." and one-line setext headings), and explicit
// <a id="..."> or <a name="..."> anchors.
func headingAnchors(text string) map[string]bool {
	masked, fenced := maskCode(text)
	rawLines := strings.Split(text, "\n")
	lines := strings.Split(masked, "\n")
	seen := map[string]int{}
	out := map[string]bool{}
	add := func(heading string) {
		s := slug(heading)
		if n, dup := seen[s]; dup {
			seen[s] = n + 1
			s = fmt.Sprintf("%s-%d", s, n+1)
		} else {
			seen[s] = 0
		}
		out[s] = true
	}
	for i, raw := range rawLines {
		if fenced[i] {
			continue
		}
		if m := atxHeading.FindStringSubmatch(raw); m != nil {
			add(m[2])
			continue
		}
		if i > 0 && !fenced[i-1] && setextLine.MatchString(raw) {
			prev := strings.TrimSpace(rawLines[i-1])
			if prev != "" && !strings.ContainsAny(prev[:1], "|#-*+>") && !atxHeading.MatchString(rawLines[i-1]) {
				add(prev)
			}
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(lines[i], -1) {
			out[strings.ToLower(m[1])] = true
		}
	}
	return out
}

var (
	imageOrLink = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)`)
	htmlTag     = regexp.MustCompile(`<[^>]+>`)
)

// slug is GitHub's anchor for a heading: the rendered text (links and
// images reduced to their text, code spans to their content, tags and
// emphasis markers dropped), lower-cased, with every character that is
// not a letter, mark, number, connector (_), space or hyphen removed and
// spaces turned into hyphens.
func slug(heading string) string {
	s := imageOrLink.ReplaceAllString(heading, "$1")
	s = htmlTag.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, "`", "")
	s = strings.NewReplacer("**", "", "*", "", "~~", "").Replace(s)
	s = strings.TrimSpace(strings.ToLower(s))
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsLetter(r), unicode.IsMark(r), unicode.IsNumber(r), unicode.Is(unicode.Pc, r), r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func TestSlug(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"4.1 Only the leader drives replicas", "41-only-the-leader-drives-replicas"},
		{"§5 The switch", "5-the-switch"},
		{"The `vcenter` section", "the-vcenter-section"},
		{"[Links](x.md) and **bold**", "links-and-bold"},
		{"Make-before-break / break-before-make", "make-before-break--break-before-make"},
		{"bootstrap_expect", "bootstrap_expect"},
		{"Ports, systemd & upgrades", "ports-systemd--upgrades"},
		{"Größe", "größe"},
	} {
		if got := slug(c.in); got != c.want {
			t.Errorf("slug(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestExtractLinksAndAnchors(t *testing.T) {
	text := "# Title\n\nSee [the design](design.md#4-invariants), ![chart](../bench/x.png \"t\"),\n" +
		"[a wrapped\nlink](cli.md) and [top](#title).\n\n" +
		"`[not a link](nowhere.md)` and\n\n```\n[nor this](nowhere.md)\n# not a heading\n```\n\n" +
		"[ref]: <operations.md#ports>\n\n## Title\n\nSetext heading\n--------------\n"
	var got []string
	for _, l := range extractLinks(text) {
		got = append(got, fmt.Sprintf("%d:%s", l.line, l.dest))
	}
	want := []string{"3:design.md#4-invariants", "3:../bench/x.png", "5:cli.md", "5:#title", "14:operations.md#ports"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("links = %q, want %q", got, want)
	}
	a := headingAnchors(text)
	for _, want := range []string{"title", "title-1", "setext-heading"} {
		if !a[want] {
			t.Errorf("anchor %q missing from %v", want, a)
		}
	}
	if a["not-a-heading"] {
		t.Errorf("a heading inside a code block became an anchor")
	}
}
