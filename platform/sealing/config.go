package sealing

import (
	"errors"
	"flag"
	"fmt"
)

// Files are the settings of a service that holds patient data keys:
// -keyring-file (the wrapped data keys) and -kek-file (the key-encryption
// key). Both are mounted from Secrets in a deployment.
type Files struct {
	KeyringFile string
	KEKFile     string
}

// RegisterFlags binds -keyring-file and -kek-file.
func (f *Files) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.KeyringFile, "keyring-file", f.KeyringFile, "keyring of the trusts' patient-data keys, wrapped by the key-encryption key (heraldctl keys rotate writes it); re-read when it changes")
	fs.StringVar(&f.KEKFile, "kek-file", f.KEKFile, "key-encryption key (32 bytes, base64) that unwraps the keyring's data keys")
}

// Set reports whether patient data keys are configured.
func (f Files) Set() bool { return f.KeyringFile != "" || f.KEKFile != "" }

// Validate names the setting at fault: both or neither, and both when
// required.
func (f Files) Validate(required bool) error {
	switch {
	case f.KeyringFile != "" && f.KEKFile == "":
		return errors.New("setting kek-file is required with keyring-file")
	case f.KEKFile != "" && f.KeyringFile == "":
		return errors.New("setting keyring-file is required with kek-file")
	case required && !f.Set():
		return errors.New("settings keyring-file and kek-file are required in the production profile (patient data is sealed per trust)")
	}
	return nil
}

// Load opens the keyring with the file KEK, or with kek when it is not nil
// (a KMS). It returns nil when nothing is configured and kek is nil.
func (f Files) Load(kek KEK) (*Keyring, error) {
	if f.KeyringFile == "" {
		return nil, nil
	}
	if kek == nil {
		fk, err := LoadFileKEK(f.KEKFile)
		if err != nil {
			return nil, fmt.Errorf("setting kek-file: %w", err)
		}
		kek = fk
	}
	k, err := Open(f.KeyringFile, kek)
	if err != nil {
		return nil, fmt.Errorf("setting keyring-file: %w", err)
	}
	return k, nil
}
