package safetycase

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Hazard is one `## HAZ-nn` section of the hazard log.
type Hazard struct {
	ID          string
	Title       string
	Mitigations []Mitigation
}

// Mitigation is one row of a hazard's mitigation table.
type Mitigation struct {
	Text     string
	ProvedBy []string // test function names
	Status   string   // "built" or "open (#issue)"
	Line     int
}

var (
	hazardHeading = regexp.MustCompile(`^## (HAZ-\d+)\s+(.*)$`)
	testName      = regexp.MustCompile(`\b(?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*`)
)

// ParseHazardLog reads the hazard sections and their mitigation tables
// (rows after a header whose first cells are `Mitigation | Proved by`).
func ParseHazardLog(r io.Reader) ([]Hazard, error) {
	var (
		hazards []Hazard
		inTable bool
		line    int
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if m := hazardHeading.FindStringSubmatch(text); m != nil {
			hazards = append(hazards, Hazard{ID: m[1], Title: m[2]})
			inTable = false
			continue
		}
		if strings.HasPrefix(text, "## ") {
			inTable = false
			continue
		}
		if !strings.HasPrefix(text, "|") {
			inTable = false
			continue
		}
		cells := splitRow(text)
		if len(cells) >= 2 && cells[0] == "Mitigation" && cells[1] == "Proved by" {
			if len(hazards) == 0 {
				return nil, fmt.Errorf("line %d: a mitigation table outside any HAZ section", line)
			}
			inTable = true
			continue
		}
		if !inTable || isSeparator(cells) {
			continue
		}
		if len(cells) != 3 {
			return nil, fmt.Errorf("line %d: a mitigation row needs 3 cells (Mitigation | Proved by | Status), has %d", line, len(cells))
		}
		h := &hazards[len(hazards)-1]
		h.Mitigations = append(h.Mitigations, Mitigation{
			Text:     cells[0],
			ProvedBy: testName.FindAllString(cells[1], -1),
			Status:   cells[2],
			Line:     line,
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read hazard log: %w", err)
	}
	return hazards, nil
}

// CitedTests returns every test name mentioned anywhere in the log.
func CitedTests(log string) []string {
	return testName.FindAllString(log, -1)
}

// Problems lists what makes the hazard log untrue of the code: a cited test
// that does not exist (exists reports whether a test function is defined),
// a built mitigation that cites no test, a status that is neither built nor
// open, and a hazard without any built, proven mitigation.
func Problems(log string, hazards []Hazard, exists func(name string) bool) []string {
	var out []string
	seen := map[string]bool{}
	for _, name := range CitedTests(log) {
		if !seen[name] && !exists(name) {
			out = append(out, fmt.Sprintf("the log cites %s, which no test defines", name))
		}
		seen[name] = true
	}
	if len(hazards) == 0 {
		out = append(out, "the log has no HAZ sections")
	}
	for _, h := range hazards {
		proven := 0
		for _, m := range h.Mitigations {
			switch {
			case m.Status == "built":
				if len(m.ProvedBy) == 0 {
					out = append(out, fmt.Sprintf("%s line %d: a built mitigation cites no test", h.ID, m.Line))
				} else {
					proven++
				}
			case strings.HasPrefix(m.Status, "open"):
			default:
				out = append(out, fmt.Sprintf("%s line %d: status %q is neither built nor open (#issue)", h.ID, m.Line, m.Status))
			}
		}
		if proven == 0 {
			out = append(out, fmt.Sprintf("%s has no built mitigation proved by a test", h.ID))
		}
	}
	return out
}

func splitRow(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(row, "|")
	row = strings.TrimSuffix(row, "|")
	cells := strings.Split(row, "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, "-: ") != "" {
			return false
		}
	}
	return true
}
