package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one validation problem: the file, the path inside it (e.g.
// policies[2].steps[0].timeout; empty for the whole file or bundle) and what
// is wrong.
type Problem struct {
	File    string
	Path    string
	Problem string
}

func (p Problem) String() string {
	switch {
	case p.File == "":
		return p.Problem
	case p.Path == "":
		return p.File + ": " + p.Problem
	default:
		return p.File + ": " + p.Path + ": " + p.Problem
	}
}

// ValidationError is a bundle that failed validation.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	const shown = 5
	var b strings.Builder
	fmt.Fprintf(&b, "invalid policy bundle (%d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString("): ")
	for i, p := range e.Problems {
		if i == shown {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-shown)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Problems returns the problems of err if it is (or wraps) a
// *ValidationError, else nil.
func Problems(err error) []Problem {
	var v *ValidationError
	if errors.As(err, &v) {
		return v.Problems
	}
	return nil
}

// Hash returns the content hash of files: SHA-256 over their names and
// contents in name order, hex.
func Hash(files []File) string {
	sorted := sortedFiles(files)
	h := sha256.New()
	var n [8]byte
	for _, f := range sorted {
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Name)))
		h.Write(n[:])
		h.Write([]byte(f.Name))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Content)))
		h.Write(n[:])
		h.Write(f.Content)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedFiles(files []File) []File {
	out := append([]File(nil), files...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// located is a section item with the file and path it came from.
type located[T any] struct {
	file string
	path string
	v    T
}

// merged is the union of a bundle's files before validation.
type merged struct {
	scalars    map[string]located[string] // tenant, name, version, timezone
	failsafe   *located[failsafeDoc]
	network    *located[networkDoc]
	categories []located[categoryDoc]
	rules      []located[ruleDoc]
	policies   []located[policyDoc]
	people     []located[personDoc]
	teams      []located[teamDoc]
	rotas      []located[rotaDoc]
}

// Parse decodes, validates and compiles a bundle. On any problem it returns
// a *ValidationError listing them all.
func Parse(files []File) (*Bundle, error) {
	c := &checker{}
	if len(files) == 0 {
		c.add("", "", "bundle has no files")
		return nil, c.err()
	}
	files = sortedFiles(files)
	m := &merged{scalars: map[string]located[string]{}}
	for i, f := range files {
		if f.Name == "" {
			c.add("", "", fmt.Sprintf("file %d has no name", i))
			continue
		}
		if i > 0 && files[i-1].Name == f.Name {
			c.add(f.Name, "", "file name appears twice in the bundle")
			continue
		}
		doc, ok := decodeFile(c, f)
		if !ok {
			continue
		}
		m.add(c, f.Name, doc)
	}
	if len(c.problems) > 0 {
		return nil, c.err()
	}
	b := compile(c, m)
	if len(c.problems) > 0 {
		return nil, c.err()
	}
	b.Files = files
	b.Hash = Hash(files)
	b.buildSnapshots()
	return b, nil
}

// decodeFile strictly decodes one file, reporting syntax errors, unknown
// fields and wrong types with their path.
func decodeFile(c *checker, f File) (fileDoc, bool) {
	var doc fileDoc
	var root yaml.Node
	if err := yaml.Unmarshal(f.Content, &root); err != nil {
		c.add(f.Name, "", "is not valid YAML: "+strings.TrimPrefix(err.Error(), "yaml: "))
		return doc, false
	}
	if root.Kind == 0 { // empty file
		return doc, true
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 && root.Content[0].Kind != yaml.MappingNode {
		c.add(f.Name, "", "must be a mapping of sections (tenant, categories, rules, policies, people, teams, rotas, ...)")
		return doc, false
	}
	lines := map[int][]place{}
	indexLines(&root, "", lines)
	dec := yaml.NewDecoder(bytes.NewReader(f.Content))
	dec.KnownFields(true)
	err := dec.Decode(&doc)
	if err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			c.add(f.Name, "", "cannot be decoded: "+err.Error())
			return doc, false
		}
		for _, msg := range te.Errors {
			path, problem := locateTypeError(msg, lines)
			c.add(f.Name, path, problem)
		}
		return doc, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		c.add(f.Name, "", "holds more than one YAML document; put each bundle section in one document")
		return doc, false
	}
	return doc, true
}

var typeErrorLine = regexp.MustCompile(`^line (\d+): (.*)$`)

var notFound = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

var cannotUnmarshal = regexp.MustCompile("^cannot unmarshal !!(\\w+) `?(.*?)`? into (\\S+)$")

// locateTypeError turns a yaml.v3 type error message into a path and a
// problem phrased for bundle authors.
func locateTypeError(msg string, lines map[int][]place) (string, string) {
	sub := typeErrorLine.FindStringSubmatch(msg)
	if sub == nil {
		return "", msg
	}
	line, _ := strconv.Atoi(sub[1])
	here := lines[line]
	path := ""
	if len(here) > 0 {
		path = here[len(here)-1].path // the deepest node starting on the line
	}
	problem := sub[2]
	if nf := notFound.FindStringSubmatch(problem); nf != nil {
		for _, p := range here { // several keys share a line in flow style
			if p.key == nf[1] {
				path = p.path
			}
		}
		return path, "unknown field " + strconv.Quote(nf[1])
	}
	if cu := cannotUnmarshal.FindStringSubmatch(problem); cu != nil {
		for _, p := range here {
			if p.value == cu[2] && p.value != "" {
				path = p.path
				break
			}
		}
		want := cu[3]
		switch {
		case strings.HasPrefix(want, "[]"):
			want = "a list"
		case strings.Contains(want, "int"):
			want = "a whole number"
		case want == "bool":
			want = "true or false"
		case want == "string":
			want = "a string"
		default:
			want = "a mapping"
		}
		return path, fmt.Sprintf("must be %s, got %s %q", want, yamlKind(cu[1]), cu[2])
	}
	return path, problem
}

func yamlKind(tag string) string {
	switch tag {
	case "str":
		return "the string"
	case "int", "float":
		return "the number"
	case "bool":
		return "the boolean"
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	default:
		return tag
	}
}

// place is a node that starts on a line: its path, and its key or scalar
// value (to tell apart several nodes of one line in flow style).
type place struct {
	path, key, value string
}

// indexLines records, per line, the nodes that start on it in document
// order (so the last is the deepest).
func indexLines(n *yaml.Node, path string, lines map[int][]place) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexLines(c, path, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			pl := place{path: p, key: k.Value}
			if v.Kind == yaml.ScalarNode {
				pl.value = v.Value
			}
			lines[k.Line] = append(lines[k.Line], pl)
			indexLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			pl := place{path: p}
			if c.Kind == yaml.ScalarNode {
				pl.value = c.Value
			}
			lines[c.Line] = append(lines[c.Line], pl)
			indexLines(c, p, lines)
		}
	}
}

// add merges one file's sections, checking that scalars agree across files.
func (m *merged) add(c *checker, file string, d fileDoc) {
	for _, s := range []struct {
		key, value string
	}{{"tenant", d.Tenant}, {"name", d.Name}, {"version", d.Version}, {"timezone", d.Timezone}} {
		if s.value == "" {
			continue
		}
		if prev, ok := m.scalars[s.key]; ok {
			if prev.v != s.value {
				c.add(file, s.key, fmt.Sprintf("is %q here but %q in %s", s.value, prev.v, prev.file))
			}
			continue
		}
		m.scalars[s.key] = located[string]{file: file, path: s.key, v: s.value}
	}
	if d.Failsafe != nil {
		if m.failsafe != nil {
			c.add(file, "failsafe", "is also set in "+m.failsafe.file+"; set it in one file")
		} else {
			m.failsafe = &located[failsafeDoc]{file: file, path: "failsafe", v: *d.Failsafe}
		}
	}
	if d.Network != nil {
		if m.network != nil {
			c.add(file, "network", "is also set in "+m.network.file+"; set it in one file")
		} else {
			m.network = &located[networkDoc]{file: file, path: "network", v: *d.Network}
		}
	}
	m.categories = appendLocated(m.categories, file, "categories", d.Categories)
	m.rules = appendLocated(m.rules, file, "rules", d.Rules)
	m.policies = appendLocated(m.policies, file, "policies", d.Policies)
	m.people = appendLocated(m.people, file, "people", d.People)
	m.teams = appendLocated(m.teams, file, "teams", d.Teams)
	m.rotas = appendLocated(m.rotas, file, "rotas", d.Rotas)
}

func appendLocated[T any](dst []located[T], file, section string, items []T) []located[T] {
	for i, v := range items {
		dst = append(dst, located[T]{file: file, path: fmt.Sprintf("%s[%d]", section, i), v: v})
	}
	return dst
}

// checker collects problems.
type checker struct {
	problems []Problem
}

func (c *checker) add(file, path, problem string) {
	c.problems = append(c.problems, Problem{File: file, Path: path, Problem: problem})
}

func (c *checker) err() error {
	return &ValidationError{Problems: c.problems}
}
