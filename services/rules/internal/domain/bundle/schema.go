package bundle

// The YAML schema of a bundle file. Every section is optional in a single
// file; the merged bundle must have the required ones. Durations are Go
// durations ("15m", "1h30m") or whole days ("14d"); times of day are "HH:MM";
// instants in rota overrides are local date-times "2026-12-24T20:00" in the
// bundle's time zone.

type fileDoc struct {
	Tenant     string        `yaml:"tenant"`
	Name       string        `yaml:"name"`
	Version    string        `yaml:"version"`
	Timezone   string        `yaml:"timezone"`
	Failsafe   *failsafeDoc  `yaml:"failsafe"`
	Network    *networkDoc   `yaml:"network"`
	Categories []categoryDoc `yaml:"categories"`
	Rules      []ruleDoc     `yaml:"rules"`
	Policies   []policyDoc   `yaml:"policies"`
	People     []personDoc   `yaml:"people"`
	Teams      []teamDoc     `yaml:"teams"`
	Rotas      []rotaDoc     `yaml:"rotas"`
}

type failsafeDoc struct {
	// Officer is the person id of the trust's fail-safe officer.
	Officer string `yaml:"officer"`
	// Queue names the trust's fail-safe queue.
	Queue string `yaml:"queue"`
	// Policy is the policy id used for quarantined alerts.
	Policy string `yaml:"policy"`
	// DefaultCategory is used when the source flagged no category and no
	// rule matched.
	DefaultCategory string `yaml:"default_category"`
}

type networkDoc struct {
	// FailsafeTeam is the team id of the network's fail-safe team.
	FailsafeTeam string `yaml:"failsafe_team"`
	// Tenant holds the team when it is another trust's; empty means this one.
	Tenant string `yaml:"tenant"`
}

type categoryDoc struct {
	Code   string    `yaml:"code"`
	Local  bool      `yaml:"local"`
	Rank   int       `yaml:"rank"`
	Clocks clocksDoc `yaml:"clocks"`
	Policy string    `yaml:"policy"`
}

type clocksDoc struct {
	Communicate string `yaml:"communicate"`
	Acknowledge string `yaml:"acknowledge"`
	Action      string `yaml:"action"`
	// Start is what the clocks run from: "received" (default: the later
	// of the report's verification and Herald's receipt) or "reported".
	Start string `yaml:"start"`
}

type ruleDoc struct {
	ID       string `yaml:"id"`
	When     string `yaml:"when"`
	Category string `yaml:"category"`
	Reason   string `yaml:"reason"`
	Policy   string `yaml:"policy"`
}

type policyDoc struct {
	ID          string    `yaml:"id"`
	Description string    `yaml:"description"`
	Steps       []stepDoc `yaml:"steps"`
	// Breach names who is told when each of the category's clocks is
	// breached; FailsafeReminder how often the fail-safe officers are
	// reminded of an alert in the fail-safe queue until it is closed.
	Breach           breachDoc `yaml:"breach"`
	FailsafeReminder string    `yaml:"failsafe_reminder"`
}

type breachDoc struct {
	Communicate []targetDoc `yaml:"communicate"`
	Acknowledge []targetDoc `yaml:"acknowledge"`
	Action      []targetDoc `yaml:"action"`
	Channels    []string    `yaml:"channels"`
}

type stepDoc struct {
	Targets  []targetDoc `yaml:"targets"`
	Timeout  string      `yaml:"timeout"`
	Repeats  int         `yaml:"repeats"`
	Ack      string      `yaml:"ack"`
	Channels []string    `yaml:"channels"`
}

type targetDoc struct {
	Kind   string `yaml:"kind"`
	Ref    string `yaml:"ref"`
	Tenant string `yaml:"tenant"`
}

type personDoc struct {
	ID       string       `yaml:"id"`
	Name     string       `yaml:"name"`
	GMC      string       `yaml:"gmc"`
	IDs      []string     `yaml:"ids"`
	Contacts []contactDoc `yaml:"contacts"`
}

type contactDoc struct {
	Channel string `yaml:"channel"`
	Address string `yaml:"address"`
}

type teamDoc struct {
	ID      string   `yaml:"id"`
	Name    string   `yaml:"name"`
	Aliases []string `yaml:"aliases"`
	Members []string `yaml:"members"`
}

type rotaDoc struct {
	ID        string        `yaml:"id"`
	Name      string        `yaml:"name"`
	Shifts    []shiftDoc    `yaml:"shifts"`
	Overrides []overrideDoc `yaml:"overrides"`
}

type shiftDoc struct {
	Days   []string `yaml:"days"`
	Start  string   `yaml:"start"`
	End    string   `yaml:"end"`
	People []string `yaml:"people"`
}

type overrideDoc struct {
	From   string   `yaml:"from"`
	To     string   `yaml:"to"`
	People []string `yaml:"people"`
	Reason string   `yaml:"reason"`
}
