package bundle

import (
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// Facts are the attributes of an alert that classification rules see. A rule
// is a CEL expression over these variables that yields a bool:
//
//	tenant           string  the trust's ODS code
//	flag             string  the source's category: CRITICAL, URGENT,
//	                         SIGNIFICANT_UNEXPECTED, CANCER, LOCAL or "" (none)
//	flag_code        string  the source's own code (CRIS C/U/S/R, OBX value)
//	abnormal_flags   list    OBX-8 / FHIR interpretation: AA, HH, LL
//	trigger_phrases  list    the trust's trigger phrases found in the report
//	exam_code        string  NICIP/SNOMED code (OBR-4)
//	exam_system      string  its code system
//	modality         string  modality or diagnostic section (OBR-24): CT, MR
//	patient_class    string  E emergency, I inpatient, O outpatient
//	location         string  site and ward (PV1-3)
//	report_status    string  PRELIMINARY, FINAL, CORRECTED, CANCELLED
//	source           string  HL7V2, FHIR, GRPC
//	referrer_team    string  the referrer's team as the source said
//	amended          bool    the alert is being re-classified after an amendment
//	hour, minute     int     local time of day in the trust's time zone
//	weekday          int     1 Monday ... 7 Sunday (local)
//	weekend          bool    Saturday or Sunday (local)
//
// Facts implements the CEL activation without maps, so evaluating a rule
// allocates little.
type Facts struct {
	Tenant         string
	Flag           string
	FlagCode       string
	AbnormalFlags  []string
	TriggerPhrases []string
	ExamCode       string
	ExamSystem     string
	Modality       string
	PatientClass   string
	Location       string
	ReportStatus   string
	Source         string
	ReferrerTeam   string
	Amended        bool
	Hour           int
	Minute         int
	Weekday        int
	Weekend        bool

	// lists caches the CEL values of the two lists for one evaluation.
	lists [2]any
}

// ResolveName implements interpreter.Activation.
func (f *Facts) ResolveName(name string) (any, bool) {
	switch name {
	case "tenant":
		return types.String(f.Tenant), true
	case "flag":
		return types.String(f.Flag), true
	case "flag_code":
		return types.String(f.FlagCode), true
	case "abnormal_flags":
		if f.lists[0] == nil {
			f.lists[0] = types.NewStringList(types.DefaultTypeAdapter, f.AbnormalFlags)
		}
		return f.lists[0], true
	case "trigger_phrases":
		if f.lists[1] == nil {
			f.lists[1] = types.NewStringList(types.DefaultTypeAdapter, f.TriggerPhrases)
		}
		return f.lists[1], true
	case "exam_code":
		return types.String(f.ExamCode), true
	case "exam_system":
		return types.String(f.ExamSystem), true
	case "modality":
		return types.String(f.Modality), true
	case "patient_class":
		return types.String(f.PatientClass), true
	case "location":
		return types.String(f.Location), true
	case "report_status":
		return types.String(f.ReportStatus), true
	case "source":
		return types.String(f.Source), true
	case "referrer_team":
		return types.String(f.ReferrerTeam), true
	case "amended":
		return types.Bool(f.Amended), true
	case "hour":
		return types.Int(f.Hour), true
	case "minute":
		return types.Int(f.Minute), true
	case "weekday":
		return types.Int(f.Weekday), true
	case "weekend":
		return types.Bool(f.Weekend), true
	default:
		return nil, false
	}
}

// Parent implements interpreter.Activation.
func (f *Facts) Parent() interpreter.Activation { return nil }

// newRuleEnv declares the Facts variables for CEL.
func newRuleEnv() (*cel.Env, error) {
	str := cel.StringType
	env, err := cel.NewEnv(
		cel.Variable("tenant", str),
		cel.Variable("flag", str),
		cel.Variable("flag_code", str),
		cel.Variable("abnormal_flags", cel.ListType(str)),
		cel.Variable("trigger_phrases", cel.ListType(str)),
		cel.Variable("exam_code", str),
		cel.Variable("exam_system", str),
		cel.Variable("modality", str),
		cel.Variable("patient_class", str),
		cel.Variable("location", str),
		cel.Variable("report_status", str),
		cel.Variable("source", str),
		cel.Variable("referrer_team", str),
		cel.Variable("amended", cel.BoolType),
		cel.Variable("hour", cel.IntType),
		cel.Variable("minute", cel.IntType),
		cel.Variable("weekday", cel.IntType),
		cel.Variable("weekend", cel.BoolType),
	)
	if err != nil {
		return nil, fmt.Errorf("declare rule variables: %w", err)
	}
	return env, nil
}

// maxRuleCost bounds the work one rule may do at evaluation (CEL cost units);
// a rule that exceeds it is treated as not matching.
const maxRuleCost = 10_000

// compileRule type-checks expr as a bool rule and plans it once.
func compileRule(env *cel.Env, expr string) (cel.Program, error) {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("does not compile: %s", iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must yield a bool, yields %s", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(maxRuleCost))
	if err != nil {
		return nil, fmt.Errorf("cannot be planned: %w", err)
	}
	return prg, nil
}
