// Package config parses a service's flags with an environment fallback under
// one prefix: the flag "kafka-brokers" may also be given as
// HERALD_KAFKA_BROKERS. A flag on the command line wins over the environment,
// which wins over the named default. Validation of the values is the
// service's Config.Validate, which must name the setting at fault.
package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Prefix of every environment variable Herald reads.
const Prefix = "HERALD_"

// EnvName returns the environment variable for a flag name.
func EnvName(flagName string) string {
	return Prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then sets every flag not given on the command
// line from its environment variable, if present. The error names the flag
// or variable whose value could not be parsed.
func Parse(fs *flag.FlagSet, args []string) error {
	return ParseEnv(fs, args, os.LookupEnv)
}

// ParseEnv is Parse with an injected environment lookup.
func ParseEnv(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := EnvName(f.Name)
		if v, ok := lookup(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("setting %s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

// StringList is a flag.Value of comma-separated strings.
type StringList []string

func (l *StringList) String() string { return strings.Join(*l, ",") }

// Set replaces the list with the comma-separated values of s.
func (l *StringList) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// Required returns an error naming the setting when value is empty.
func Required(flagName, value string) error {
	if strings.TrimSpace(value) == "" {
		return fmt.Errorf("setting %s (%s) is required", flagName, EnvName(flagName))
	}
	return nil
}

// Positive returns an error naming the setting when d is not positive.
func Positive(flagName string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("setting %s (%s) must be positive, got %v", flagName, EnvName(flagName), d)
	}
	return nil
}

// SecretFile binds the flag name+"-file" (environment fallback
// HERALD_<NAME>_FILE): the path of a file holding a secret (a password, an
// API key), read when the flag is set, its trailing line break dropped,
// into *secret. Secrets come only from files, such as a Kubernetes Secret
// mounted as a volume: never from a flag value or an environment variable,
// which leak through process listings, crash reports and `kubectl
// describe`. The flag prints the path, never the secret.
func SecretFile(fs *flag.FlagSet, secret *string, name, usage string) {
	fs.Var(&secretFile{secret: secret}, name+"-file", usage+" (a file holding it; read at start)")
}

type secretFile struct {
	path   string
	secret *string
}

func (s *secretFile) String() string {
	if s == nil {
		return ""
	}
	return s.path
}

func (s *secretFile) Set(path string) error {
	if path == "" {
		s.path, *s.secret = "", ""
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read secret: %w", err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return fmt.Errorf("secret file %s is empty", path)
	}
	s.path, *s.secret = path, v
	return nil
}
