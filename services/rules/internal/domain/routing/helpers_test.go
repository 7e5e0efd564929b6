package routing_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	"github.com/herald-health/herald/services/rules/internal/domain/bundle"
)

// set is a fixed set of bundles.
type set map[string]*bundle.Bundle

func (s set) Bundle(tenant string) (*bundle.Bundle, bool) {
	b, ok := s[tenant]
	return b, ok
}

func demo(t testing.TB) set {
	t.Helper()
	out := set{}
	for _, tenant := range []string{"RZZ", "RZY"} {
		dir := filepath.Join("..", "..", "..", "bundles", "demo", tenant)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		var files []bundle.File
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".yaml") {
				c, err := os.ReadFile(filepath.Join(dir, e.Name()))
				require.NoError(t, err)
				files = append(files, bundle.File{Name: tenant + "/" + e.Name(), Content: c})
			}
		}
		b, err := bundle.Parse(files)
		require.NoError(t, err, "%v", bundle.Problems(err))
		out[tenant] = b
	}
	return out
}

func utc(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return v
}

// alert builds alert details from a few attributes.
type alert struct {
	flag     eventsv1.Category
	code     string
	abnormal []string
	phrases  []string
	modality string
	class    string
	referrer string
	team     string
	reported time.Time
}

func (a alert) details() *eventsv1.AlertDetails {
	d := &eventsv1.AlertDetails{
		Source:       eventsv1.Source_SOURCE_HL7V2,
		Accession:    "ACC1",
		FindingCode:  "F1",
		Patient:      &eventsv1.Patient{NhsNumber: "9990000018", FamilyName: "Synthetic"},
		Exam:         &eventsv1.Exam{Code: "CCHAPC", Modality: a.modality},
		SourceFlag:   &eventsv1.SourceFlag{Category: a.flag, Code: a.code, AbnormalFlags: a.abnormal, TriggerPhrases: a.phrases},
		ReportStatus: eventsv1.ReportStatus_REPORT_STATUS_FINAL,
		Referrer:     &eventsv1.Clinician{Id: a.referrer, Team: a.team},
		Encounter:    &eventsv1.Encounter{PatientClass: a.class, Location: "RZZ01^WARD1"},
	}
	if !a.reported.IsZero() {
		d.ReportedAt = timestamppb.New(a.reported)
	}
	return d
}
