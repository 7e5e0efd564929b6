package bundle_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// A minimal valid bundle in two files; each validation case edits it.
const mainYAML = `tenant: RZZ
version: "1"
failsafe:
  officer: fso
  queue: RZZ-failsafe
  policy: p
  default_category: URGENT
network:
  failsafe_team: net
categories:
  - code: CRITICAL
    rank: 1
    clocks:
      acknowledge: 1h
    policy: p
  - code: URGENT
    rank: 2
    clocks:
      acknowledge: 24h
    policy: p
  - code: CANCER
    rank: 3
    clocks:
      acknowledge: 3d
    policy: p
  - code: SIGNIFICANT_UNEXPECTED
    rank: 4
    clocks:
      acknowledge: 7d
    policy: p
rules:
  - id: r1
    when: '"AA" in abnormal_flags'
    category: CRITICAL
    reason: very abnormal
policies:
  - id: p
    steps:
      - targets:
          - kind: oncall
            ref: rota
        timeout: 15m
        repeats: 1
        ack: any_one
        channels: [sms]
      - targets:
          - kind: failsafe_officer
          - kind: network_failsafe_team
        timeout: 30m
        channels: [email]
`

const dirYAML = `people:
  - id: fso
    gmc: "7000001"
    ids: ["L1"]
    contacts:
      - channel: email
        address: fso@rzz.example.nhs.uk
      - channel: sms
        address: "+447700900001"
  - id: reg
    contacts:
      - channel: sms
        address: "+447700900002"
teams:
  - id: net
    aliases: ["NET"]
    members: [fso]
rotas:
  - id: rota
    shifts:
      - days: [daily]
        start: "08:00"
        end: "08:00"
        people: [reg]
    overrides:
      - from: "2026-12-24T20:00"
        to: "2026-12-25T08:00"
        people: [fso]
`

func baseFiles() map[string]string {
	return map[string]string{"main.yaml": mainYAML, "dir.yaml": dirYAML}
}

func toFiles(m map[string]string) []bundle.File {
	var out []bundle.File
	for name, content := range m {
		out = append(out, bundle.File{Name: name, Content: []byte(content)})
	}
	return out
}

func TestMinimalBundleIsValid(t *testing.T) {
	b := mustParse(t, toFiles(baseFiles()))
	require.Equal(t, "RZZ", b.Tenant)
	require.Equal(t, "Europe/London", b.Location.String())
}

func TestEveryValidationErrorNamesFilePathAndProblem(t *testing.T) {
	type edit struct{ file, old, new string }
	cases := []struct {
		name  string
		edits []edit
		want  bundle.Problem // Problem is a substring
	}{
		// File level.
		{"syntax", []edit{{"main.yaml", "tenant: RZZ", "tenant: [RZZ"}}, bundle.Problem{File: "main.yaml", Path: "", Problem: "is not valid YAML"}},
		{"not a mapping", []edit{{"dir.yaml", dirYAML, "- just\n- a list\n"}}, bundle.Problem{File: "dir.yaml", Path: "", Problem: "must be a mapping of sections"}},
		{"two documents", []edit{{"dir.yaml", "people:", "version: \"1\"\n---\npeople:"}}, bundle.Problem{File: "dir.yaml", Path: "", Problem: "more than one YAML document"}},
		{"unknown top-level field", []edit{{"main.yaml", "version: \"1\"", "version: \"1\"\npolicy: x"}}, bundle.Problem{File: "main.yaml", Path: "policy", Problem: `unknown field "policy"`}},
		{"unknown nested field", []edit{{"main.yaml", "        repeats: 1", "        repeats: 1\n        repeat: 2"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].repeat", Problem: `unknown field "repeat"`}},
		{"wrong type", []edit{{"main.yaml", "        repeats: 1", "        repeats: many"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].repeats", Problem: `must be a whole number, got the string "many"`}},
		{"unknown field in flow style", []edit{{"dir.yaml", "teams:\n  - id: net\n    aliases: [\"NET\"]\n    members: [fso]\n", "teams:\n  - {id: net, colour: red, aliases: [\"NET\"], members: [fso]}\n"}}, bundle.Problem{File: "dir.yaml", Path: "teams[0].colour", Problem: `unknown field "colour"`}},
		{"wrong type in flow style", []edit{{"main.yaml", "        timeout: 15m\n        repeats: 1\n        ack: any_one\n        channels: [sms]\n", "        timeout: 15m\n        repeats: 1\n        ack: any_one\n        channels: [sms]\n      - {targets: [{kind: failsafe_officer}], timeout: 1m, repeats: often, channels: [sms]}\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[1].repeats", Problem: `must be a whole number, got the string "often"`}},
		{"list expected", []edit{{"main.yaml", "channels: [sms]", "channels: sms"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].channels", Problem: "must be a list"}},
		// Breach notices and the fail-safe reminder.
		{"breach target unknown", []edit{{"main.yaml", "  - id: p\n    steps:\n", "  - id: p\n    breach:\n      acknowledge: [{kind: person, ref: nobody}]\n    steps:\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].breach.acknowledge[0].ref", Problem: `person "nobody" is not in the directory`}},
		{"breach channel unknown", []edit{{"main.yaml", "  - id: p\n    steps:\n", "  - id: p\n    breach:\n      channels: [pager]\n      acknowledge: [{kind: failsafe_officer}]\n    steps:\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].breach.channels[0]", Problem: "pager"}},
		{"reminder not a duration", []edit{{"main.yaml", "  - id: p\n    steps:\n", "  - id: p\n    failsafe_reminder: often\n    steps:\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].failsafe_reminder", Problem: "often"}},
		// Scalars.
		{"tenant missing", []edit{{"main.yaml", "tenant: RZZ\n", ""}}, bundle.Problem{File: "main.yaml", Path: "tenant", Problem: "is required"}},
		{"tenant not ODS", []edit{{"main.yaml", "tenant: RZZ", "tenant: rzz1"}}, bundle.Problem{File: "main.yaml", Path: "tenant", Problem: "not a trust ODS code"}},
		{"tenant disagrees", []edit{{"dir.yaml", "people:", "tenant: RZY\npeople:"}}, bundle.Problem{File: "main.yaml", Path: "tenant", Problem: `is "RZZ" here but "RZY" in dir.yaml`}},
		{"version missing", []edit{{"main.yaml", "version: \"1\"\n", ""}}, bundle.Problem{File: "main.yaml", Path: "version", Problem: "is required"}},
		{"timezone unknown", []edit{{"main.yaml", "version: \"1\"", "version: \"1\"\ntimezone: Mars/Olympus"}}, bundle.Problem{File: "main.yaml", Path: "timezone", Problem: "not a known time zone"}},
		// Fail-safe and network.
		{"failsafe twice", []edit{{"dir.yaml", "people:", "failsafe:\n  officer: fso\npeople:"}}, bundle.Problem{File: "main.yaml", Path: "failsafe", Problem: "is also set in dir.yaml"}},
		{"failsafe missing", []edit{{"main.yaml", "failsafe:\n  officer: fso\n  queue: RZZ-failsafe\n  policy: p\n  default_category: URGENT\n", ""}}, bundle.Problem{File: "main.yaml", Path: "failsafe", Problem: "is required"}},
		{"officer missing", []edit{{"main.yaml", "  officer: fso\n", ""}}, bundle.Problem{File: "main.yaml", Path: "failsafe.officer", Problem: "is required"}},
		{"officer unknown", []edit{{"main.yaml", "  officer: fso", "  officer: nobody"}}, bundle.Problem{File: "main.yaml", Path: "failsafe.officer", Problem: `person "nobody" is not in the directory`}},
		{"queue missing", []edit{{"main.yaml", "  queue: RZZ-failsafe\n", ""}}, bundle.Problem{File: "main.yaml", Path: "failsafe.queue", Problem: "is required"}},
		{"failsafe policy missing", []edit{{"main.yaml", "  policy: p\n  default", "  default"}}, bundle.Problem{File: "main.yaml", Path: "failsafe.policy", Problem: "is required"}},
		{"failsafe policy unknown", []edit{{"main.yaml", "  policy: p\n  default", "  policy: q\n  default"}}, bundle.Problem{File: "main.yaml", Path: "failsafe.policy", Problem: `policy "q" is not defined`}},
		{"default category missing", []edit{{"main.yaml", "  default_category: URGENT\n", ""}}, bundle.Problem{File: "main.yaml", Path: "failsafe.default_category", Problem: "is required"}},
		{"default category unknown", []edit{{"main.yaml", "default_category: URGENT", "default_category: ROUTINE"}}, bundle.Problem{File: "main.yaml", Path: "failsafe.default_category", Problem: `category "ROUTINE" is not defined`}},
		{"network team unknown", []edit{{"main.yaml", "failsafe_team: net", "failsafe_team: nope"}}, bundle.Problem{File: "main.yaml", Path: "network.failsafe_team", Problem: `team "nope" is not defined`}},
		{"network team missing", []edit{{"main.yaml", "  failsafe_team: net", "  tenant: RZY"}}, bundle.Problem{File: "main.yaml", Path: "network.failsafe_team", Problem: "is required"}},
		{"network tenant bad", []edit{{"main.yaml", "  failsafe_team: net", "  failsafe_team: net\n  tenant: xx"}}, bundle.Problem{File: "main.yaml", Path: "network.tenant", Problem: "not a trust ODS code"}},
		{"network missing but targeted", []edit{{"main.yaml", "network:\n  failsafe_team: net\n", ""}}, bundle.Problem{File: "main.yaml", Path: "network", Problem: "targets the network fail-safe team"}},
		// Categories.
		{"category code missing", []edit{{"main.yaml", "  - code: CANCER\n", "  - code: \"\"\n"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].code", Problem: "is required"}},
		{"category not standard", []edit{{"main.yaml", "  - code: CANCER\n", "  - code: ROUTINE\n"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].code", Problem: "not a standard category"}},
		{"standard marked local", []edit{{"main.yaml", "  - code: CANCER\n", "  - code: CANCER\n    local: true\n"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].local", Problem: "is a standard category"}},
		{"local code invalid", []edit{{"main.yaml", "  - code: CANCER\n", "  - code: ed-discrepancy\n    local: true\n"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].code", Problem: "not a valid local code"}},
		{"category twice", []edit{{"main.yaml", "  - code: CANCER\n", "  - code: URGENT\n"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].code", Problem: "category URGENT is already defined at main.yaml: categories[1]"}},
		{"standard category missing", []edit{{"main.yaml", "  - code: CANCER\n", "  - code: LOCAL_ONE\n    local: true\n"}}, bundle.Problem{File: "main.yaml", Path: "categories", Problem: "category CANCER is not defined"}},
		{"rank missing", []edit{{"main.yaml", "    rank: 3\n", ""}}, bundle.Problem{File: "main.yaml", Path: "categories[2].rank", Problem: "is required"}},
		{"rank taken", []edit{{"main.yaml", "    rank: 3\n", "    rank: 2\n"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].rank", Problem: "rank 2 is already held by URGENT"}},
		{"clock start unknown", []edit{{"main.yaml", "acknowledge: 3d", "acknowledge: 3d\n      start: verified"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].clocks.start", Problem: `"verified" is not a clock start: use received (the default) or reported`}},
		{"clock not a duration", []edit{{"main.yaml", "acknowledge: 3d", "acknowledge: soon"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].clocks.acknowledge", Problem: `"soon" is not a duration`}},
		{"clock not positive", []edit{{"main.yaml", "acknowledge: 3d", "acknowledge: -1h"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].clocks.acknowledge", Problem: "must be positive"}},
		{"no clocks", []edit{{"main.yaml", "    clocks:\n      acknowledge: 3d\n", ""}}, bundle.Problem{File: "main.yaml", Path: "categories[2].clocks", Problem: "at least one of communicate, acknowledge, action"}},
		{"category policy missing", []edit{{"main.yaml", "      acknowledge: 3d\n    policy: p\n", "      acknowledge: 3d\n"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].policy", Problem: "is required"}},
		{"category policy unknown", []edit{{"main.yaml", "      acknowledge: 3d\n    policy: p\n", "      acknowledge: 3d\n    policy: q\n"}}, bundle.Problem{File: "main.yaml", Path: "categories[2].policy", Problem: `policy "q" is not defined`}},
		// Rules.
		{"rule id missing", []edit{{"main.yaml", "  - id: r1\n", "  - id: \"\"\n"}}, bundle.Problem{File: "main.yaml", Path: "rules[0].id", Problem: "is required"}},
		{"rule id invalid", []edit{{"main.yaml", "  - id: r1\n", "  - id: \"r 1\"\n"}}, bundle.Problem{File: "main.yaml", Path: "rules[0].id", Problem: "not a valid rule id"}},
		{"rule id twice", []edit{{"main.yaml", "policies:\n", "  - id: r1\n    when: 'true'\n    category: URGENT\n    reason: x\npolicies:\n"}}, bundle.Problem{File: "main.yaml", Path: "rules[1].id", Problem: `rule id "r1" is already used at main.yaml: rules[0].id`}},
		{"rule when missing", []edit{{"main.yaml", "    when: '\"AA\" in abnormal_flags'\n", ""}}, bundle.Problem{File: "main.yaml", Path: "rules[0].when", Problem: "is required"}},
		{"rule does not compile", []edit{{"main.yaml", `'"AA" in abnormal_flags'`, `'"AA" in abnormal_flag'`}}, bundle.Problem{File: "main.yaml", Path: "rules[0].when", Problem: "does not compile: ERROR: <input>:1:9: undeclared reference to 'abnormal_flag'"}},
		{"rule syntax error", []edit{{"main.yaml", `'"AA" in abnormal_flags'`, `'modality == '`}}, bundle.Problem{File: "main.yaml", Path: "rules[0].when", Problem: "does not compile"}},
		{"rule not bool", []edit{{"main.yaml", `'"AA" in abnormal_flags'`, `'modality'`}}, bundle.Problem{File: "main.yaml", Path: "rules[0].when", Problem: "must yield a bool, yields string"}},
		{"rule too expensive", []edit{{"main.yaml", `'"AA" in abnormal_flags'`, `'trigger_phrases.exists(a, trigger_phrases.exists(b, trigger_phrases.exists(c, a + b + c == "x")))'`}}, bundle.Problem{File: "main.yaml", Path: "rules[0].when", Problem: "more than 100000: simplify it"}},
		{"rule category missing", []edit{{"main.yaml", "    category: CRITICAL\n", ""}}, bundle.Problem{File: "main.yaml", Path: "rules[0].category", Problem: "is required"}},
		{"rule category unknown", []edit{{"main.yaml", "    category: CRITICAL\n", "    category: RED\n"}}, bundle.Problem{File: "main.yaml", Path: "rules[0].category", Problem: `category "RED" is not defined`}},
		{"rule reason missing", []edit{{"main.yaml", "    reason: very abnormal\n", ""}}, bundle.Problem{File: "main.yaml", Path: "rules[0].reason", Problem: "is required"}},
		{"rule policy unknown", []edit{{"main.yaml", "    reason: very abnormal\n", "    reason: very abnormal\n    policy: q\n"}}, bundle.Problem{File: "main.yaml", Path: "rules[0].policy", Problem: `policy "q" is not defined`}},
		// Policies.
		{"policy id missing", []edit{{"main.yaml", "  - id: p\n", "  - description: x\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].id", Problem: "is required"}},
		{"policy id twice", []edit{{"main.yaml", "  - id: p\n    steps:\n", "  - id: p\n    steps:\n      - targets: [{kind: failsafe_officer}]\n        timeout: 1m\n        channels: [sms]\n  - id: p\n    steps:\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[1].id", Problem: `policy id "p" is already used`}},
		{"steps missing", []edit{{"main.yaml", "  - id: p\n    steps:\n", "  - id: p\n    steps: []\n  - id: p2\n    steps:\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps", Problem: "at least one step"}},
		{"targets missing", []edit{{"main.yaml", "      - targets:\n          - kind: oncall\n            ref: rota\n", "      - targets: []\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets", Problem: "at least one target"}},
		{"target kind missing", []edit{{"main.yaml", "          - kind: oncall\n            ref: rota\n", "          - ref: rota\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets[0].kind", Problem: "is required"}},
		{"target kind unknown", []edit{{"main.yaml", "kind: oncall", "kind: pager"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets[0].kind", Problem: `"pager" is not a target kind`}},
		{"oncall ref missing", []edit{{"main.yaml", "            ref: rota\n", ""}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets[0].ref", Problem: "is required for kind oncall"}},
		{"oncall rota unknown", []edit{{"main.yaml", "ref: rota", "ref: nights"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets[0].ref", Problem: `rota "nights" is not defined`}},
		{"person unknown", []edit{{"main.yaml", "kind: oncall\n            ref: rota", "kind: person\n            ref: nobody"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets[0].ref", Problem: `person "nobody" is not in the directory`}},
		{"ref not used", []edit{{"main.yaml", "          - kind: failsafe_officer\n", "          - kind: failsafe_officer\n            ref: fso\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[1].targets[0].ref", Problem: "is not used by kind failsafe_officer"}},
		{"tenant not used", []edit{{"main.yaml", "            ref: rota\n", "            ref: rota\n            tenant: RZY\n"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets[0].tenant", Problem: "is not used by kind oncall"}},
		{"other trust tenant missing", []edit{{"main.yaml", "kind: oncall", "kind: other_trust_role"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets[0].tenant", Problem: "is required"}},
		{"other trust tenant bad", []edit{{"main.yaml", "            ref: rota\n", "            ref: rota\n            tenant: R1\n"}, {"main.yaml", "kind: oncall", "kind: other_trust_role"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets[0].tenant", Problem: "not a trust ODS code"}},
		{"other trust is this trust", []edit{{"main.yaml", "            ref: rota\n", "            ref: rota\n            tenant: RZZ\n"}, {"main.yaml", "kind: oncall", "kind: other_trust_role"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].targets[0].tenant", Problem: "names this trust"}},
		{"timeout missing", []edit{{"main.yaml", "        timeout: 15m\n", ""}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].timeout", Problem: "is required"}},
		{"timeout bad", []edit{{"main.yaml", "timeout: 15m", "timeout: 15 minutes"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].timeout", Problem: `"15 minutes" is not a duration`}},
		{"timeout zero", []edit{{"main.yaml", "timeout: 15m", "timeout: 0s"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].timeout", Problem: "must be positive"}},
		{"repeats negative", []edit{{"main.yaml", "repeats: 1", "repeats: -1"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].repeats", Problem: "must not be negative"}},
		{"repeats too many", []edit{{"main.yaml", "repeats: 1", "repeats: 50"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].repeats", Problem: "more than 20"}},
		{"ack unknown", []edit{{"main.yaml", "ack: any_one", "ack: some"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].ack", Problem: `"some" is not an acknowledge mode`}},
		{"channels missing", []edit{{"main.yaml", "        channels: [sms]\n", ""}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].channels", Problem: "is required"}},
		{"channel unknown", []edit{{"main.yaml", "channels: [sms]", "channels: [sms, pager]"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].channels[1]", Problem: `"pager" is not a channel`}},
		{"channel twice", []edit{{"main.yaml", "channels: [sms]", "channels: [sms, sms]"}}, bundle.Problem{File: "main.yaml", Path: "policies[0].steps[0].channels[1]", Problem: "listed twice"}},
		// People.
		{"person id missing", []edit{{"dir.yaml", "  - id: reg\n", "  - name: x\n"}}, bundle.Problem{File: "dir.yaml", Path: "people[1].id", Problem: "is required"}},
		{"person id twice", []edit{{"dir.yaml", "  - id: reg\n", "  - id: fso\n"}}, bundle.Problem{File: "dir.yaml", Path: "people[1].id", Problem: `person id "fso" is already used at dir.yaml: people[0].id`}},
		{"gmc not 7 digits", []edit{{"dir.yaml", `gmc: "7000001"`, `gmc: "70001"`}}, bundle.Problem{File: "dir.yaml", Path: "people[0].gmc", Problem: "not a GMC number"}},
		{"gmc twice", []edit{{"dir.yaml", "  - id: reg\n", "  - id: reg\n    gmc: \"7000001\"\n"}}, bundle.Problem{File: "dir.yaml", Path: "people[1].gmc", Problem: "already given to fso"}},
		{"clinician id twice", []edit{{"dir.yaml", "  - id: reg\n", "  - id: reg\n    ids: [\"L1\"]\n"}}, bundle.Problem{File: "dir.yaml", Path: "people[1].ids[0]", Problem: `clinician id "L1" is already given to fso`}},
		{"clinician id empty", []edit{{"dir.yaml", `ids: ["L1"]`, `ids: [""]`}}, bundle.Problem{File: "dir.yaml", Path: "people[0].ids[0]", Problem: "is empty"}},
		{"contacts missing", []edit{{"dir.yaml", "    contacts:\n      - channel: sms\n        address: \"+447700900002\"\n", ""}}, bundle.Problem{File: "dir.yaml", Path: "people[1].contacts", Problem: "at least one contact point"}},
		{"contact channel missing", []edit{{"dir.yaml", "      - channel: sms\n        address: \"+447700900002\"", "      - address: \"+447700900002\""}}, bundle.Problem{File: "dir.yaml", Path: "people[1].contacts[0].channel", Problem: "is required"}},
		{"contact channel unknown", []edit{{"dir.yaml", "      - channel: sms\n        address: \"+447700900002\"", "      - channel: fax\n        address: \"+447700900002\""}}, bundle.Problem{File: "dir.yaml", Path: "people[1].contacts[0].channel", Problem: `"fax" is not a channel`}},
		{"address missing", []edit{{"dir.yaml", "        address: \"+447700900002\"\n", ""}}, bundle.Problem{File: "dir.yaml", Path: "people[1].contacts[0].address", Problem: "is required"}},
		{"email invalid", []edit{{"dir.yaml", "address: fso@rzz.example.nhs.uk", "address: fso-at-rzz"}}, bundle.Problem{File: "dir.yaml", Path: "people[0].contacts[0].address", Problem: "is not an email address"}},
		{"phone invalid", []edit{{"dir.yaml", `address: "+447700900002"`, `address: "07700 900002"`}}, bundle.Problem{File: "dir.yaml", Path: "people[1].contacts[0].address", Problem: "not a phone number in international form"}},
		{"webhook invalid", []edit{{"dir.yaml", "      - channel: sms\n        address: \"+447700900002\"", "      - channel: webhook\n        address: ftp://x"}}, bundle.Problem{File: "dir.yaml", Path: "people[1].contacts[0].address", Problem: "not an http(s) URL"}},
		// Teams.
		{"team id twice", []edit{{"dir.yaml", "rotas:\n", "  - id: net\n    members: [reg]\nrotas:\n"}}, bundle.Problem{File: "dir.yaml", Path: "teams[1].id", Problem: `team id "net" is already used`}},
		{"team members missing", []edit{{"dir.yaml", "    members: [fso]\n", ""}}, bundle.Problem{File: "dir.yaml", Path: "teams[0].members", Problem: "at least one person"}},
		{"team member unknown", []edit{{"dir.yaml", "members: [fso]", "members: [fso, ghost]"}}, bundle.Problem{File: "dir.yaml", Path: "teams[0].members[1]", Problem: `person "ghost" is not in the directory`}},
		{"team alias twice", []edit{{"dir.yaml", "rotas:\n", "  - id: other\n    aliases: [\"NET\"]\n    members: [reg]\nrotas:\n"}}, bundle.Problem{File: "dir.yaml", Path: "teams[1].aliases[0]", Problem: `alias "NET" is already used by team net`}},
		{"team alias empty", []edit{{"dir.yaml", `aliases: ["NET"]`, `aliases: [""]`}}, bundle.Problem{File: "dir.yaml", Path: "teams[0].aliases[0]", Problem: "is empty"}},
		// Rotas.
		{"rota id twice", []edit{{"dir.yaml", "  - id: rota\n", "  - id: rota\n    shifts:\n      - {days: [daily], start: \"08:00\", end: \"08:00\", people: [reg]}\n  - id: rota\n"}}, bundle.Problem{File: "dir.yaml", Path: "rotas[1].id", Problem: `rota id "rota" is already used`}},
		{"rota has no shifts", []edit{{"dir.yaml", "  - id: rota\n", "  - id: empty\n  - id: rota\n"}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].shifts", Problem: "at least one shift"}},
		{"shift days missing", []edit{{"dir.yaml", "      - days: [daily]\n        start", "      - start"}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].shifts[0].days", Problem: "is required"}},
		{"shift day unknown", []edit{{"dir.yaml", "days: [daily]", "days: [mon, someday]"}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].shifts[0].days[1]", Problem: `"someday" is not a day`}},
		{"shift start bad", []edit{{"dir.yaml", `start: "08:00"`, `start: "8am"`}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].shifts[0].start", Problem: `"8am" is not a local time of day`}},
		{"shift start out of range", []edit{{"dir.yaml", `start: "08:00"`, `start: "24:00"`}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].shifts[0].start", Problem: "not a local time of day"}},
		{"shift end missing", []edit{{"dir.yaml", "        end: \"08:00\"\n", ""}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].shifts[0].end", Problem: "is required"}},
		{"shift people missing", []edit{{"dir.yaml", "        people: [reg]\n", ""}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].shifts[0].people", Problem: "at least one person"}},
		{"shift person unknown", []edit{{"dir.yaml", "people: [reg]", "people: [ghost]"}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].shifts[0].people[0]", Problem: `person "ghost" is not in the directory`}},
		{"override from bad", []edit{{"dir.yaml", `from: "2026-12-24T20:00"`, `from: "Christmas Eve"`}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].overrides[0].from", Problem: "not a local date-time"}},
		{"override to missing", []edit{{"dir.yaml", "        to: \"2026-12-25T08:00\"\n", ""}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].overrides[0].to", Problem: "is required"}},
		{"override ends before it starts", []edit{{"dir.yaml", `to: "2026-12-25T08:00"`, `to: "2026-12-24T08:00"`}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].overrides[0].to", Problem: "must be after from"}},
		{"override person unknown", []edit{{"dir.yaml", "people: [fso]\n", "people: [ghost]\n"}}, bundle.Problem{File: "dir.yaml", Path: "rotas[0].overrides[0].people[0]", Problem: `person "ghost" is not in the directory`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Given a valid bundle with one edit.
			files := baseFiles()
			for _, e := range tc.edits {
				require.Contains(t, files[e.file], e.old, "the edit must apply to the template")
				files[e.file] = strings.Replace(files[e.file], e.old, e.new, 1)
			}
			// When it is parsed.
			b, err := bundle.Parse(toFiles(files))
			// Then it is rejected with the problem named.
			require.Error(t, err)
			require.Nil(t, b)
			problems := bundle.Problems(err)
			for _, p := range problems {
				if p.File == tc.want.File && p.Path == tc.want.Path && strings.Contains(p.Problem, tc.want.Problem) {
					return
				}
			}
			t.Fatalf("got problems %q, want one like %q", problems, tc.want.String())
		})
	}
}

func TestBundleLevelProblems(t *testing.T) {
	_, err := bundle.Parse(nil)
	require.Equal(t, []bundle.Problem{{Problem: "bundle has no files"}}, bundle.Problems(err))

	files := toFiles(baseFiles())
	files = append(files, bundle.File{Name: "main.yaml", Content: []byte(mainYAML)})
	_, err = bundle.Parse(files)
	require.Contains(t, bundle.Problems(err), bundle.Problem{File: "main.yaml", Problem: "file name appears twice in the bundle"})

	_, err = bundle.Parse([]bundle.File{{Content: []byte(mainYAML)}})
	require.Contains(t, bundle.Problems(err), bundle.Problem{Problem: "file 0 has no name"})
	require.ErrorContains(t, err, "invalid policy bundle")
}

func TestHashIsOrderIndependentAndContentSensitive(t *testing.T) {
	a := []bundle.File{{Name: "a.yaml", Content: []byte("x")}, {Name: "b.yaml", Content: []byte("y")}}
	b := []bundle.File{a[1], a[0]}
	require.Equal(t, bundle.Hash(a), bundle.Hash(b))
	c := []bundle.File{{Name: "a.yaml", Content: []byte("xy")}, {Name: "b.yaml", Content: []byte("")}}
	require.NotEqual(t, bundle.Hash(a), bundle.Hash(c))
}
