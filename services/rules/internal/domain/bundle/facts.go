package bundle

import (
	"fmt"

	"github.com/google/cel-go/cel"
	celchecker "github.com/google/cel-go/checker"
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

	// vals caches the CEL values: a Facts serves one alert.
	vals [numVars]any
}

// Names of the variables, in the order of Facts.vals.
const (
	vTenant = iota
	vFlag
	vFlagCode
	vAbnormal
	vPhrases
	vExamCode
	vExamSystem
	vModality
	vPatientClass
	vLocation
	vReportStatus
	vSource
	vReferrerTeam
	vAmended
	vHour
	vMinute
	vWeekday
	vWeekend
	numVars
)

func varIndex(name string) int {
	switch name {
	case "tenant":
		return vTenant
	case "flag":
		return vFlag
	case "flag_code":
		return vFlagCode
	case "abnormal_flags":
		return vAbnormal
	case "trigger_phrases":
		return vPhrases
	case "exam_code":
		return vExamCode
	case "exam_system":
		return vExamSystem
	case "modality":
		return vModality
	case "patient_class":
		return vPatientClass
	case "location":
		return vLocation
	case "report_status":
		return vReportStatus
	case "source":
		return vSource
	case "referrer_team":
		return vReferrerTeam
	case "amended":
		return vAmended
	case "hour":
		return vHour
	case "minute":
		return vMinute
	case "weekday":
		return vWeekday
	case "weekend":
		return vWeekend
	default:
		return -1
	}
}

// MaxListLen bounds the lists rules see (abnormal flags, trigger phrases),
// which bounds the work of any rule: rules run without a runtime cost
// tracker, which would cost more than the rules themselves.
const MaxListLen = 64

func capList(xs []string) []string {
	if len(xs) > MaxListLen {
		return xs[:MaxListLen]
	}
	return xs
}

// ResolveName implements interpreter.Activation. Values are converted once
// per Facts and reused by every rule.
func (f *Facts) ResolveName(name string) (any, bool) {
	i := varIndex(name)
	if i < 0 {
		return nil, false
	}
	if v := f.vals[i]; v != nil {
		return v, true
	}
	var v any
	switch i {
	case vTenant:
		v = types.String(f.Tenant)
	case vFlag:
		v = types.String(f.Flag)
	case vFlagCode:
		v = types.String(f.FlagCode)
	case vAbnormal:
		v = types.NewStringList(types.DefaultTypeAdapter, capList(f.AbnormalFlags))
	case vPhrases:
		v = types.NewStringList(types.DefaultTypeAdapter, capList(f.TriggerPhrases))
	case vExamCode:
		v = types.String(f.ExamCode)
	case vExamSystem:
		v = types.String(f.ExamSystem)
	case vModality:
		v = types.String(f.Modality)
	case vPatientClass:
		v = types.String(f.PatientClass)
	case vLocation:
		v = types.String(f.Location)
	case vReportStatus:
		v = types.String(f.ReportStatus)
	case vSource:
		v = types.String(f.Source)
	case vReferrerTeam:
		v = types.String(f.ReferrerTeam)
	case vAmended:
		v = types.Bool(f.Amended)
	case vHour:
		v = types.Int(f.Hour)
	case vMinute:
		v = types.Int(f.Minute)
	case vWeekday:
		v = types.Int(f.Weekday)
	case vWeekend:
		v = types.Bool(f.Weekend)
	}
	f.vals[i] = v
	return v, true
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

// MaxRuleCost bounds a rule's worst-case cost (CEL cost units) estimated at
// load with lists of MaxListLen items and strings of MaxStringLen
// characters: a rule that could be expensive is refused at validation
// rather than slowing every alert.
const MaxRuleCost = 100_000

// MaxStringLen is the string length assumed by the cost estimate.
const MaxStringLen = 1024

// sizeEstimator tells the CEL cost estimator how large the variables can be.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n celchecker.AstNode) *celchecker.SizeEstimate {
	if len(n.Path()) == 0 {
		return nil
	}
	switch n.Type().Kind() {
	case types.ListKind:
		return &celchecker.SizeEstimate{Min: 0, Max: MaxListLen}
	case types.StringKind:
		return &celchecker.SizeEstimate{Min: 0, Max: MaxStringLen}
	}
	return nil
}

func (sizeEstimator) EstimateCallCost(string, string, *celchecker.AstNode, []celchecker.AstNode) *celchecker.CallEstimate {
	return nil
}

// compileRule type-checks expr as a bool rule, bounds its cost and plans it
// once.
func compileRule(env *cel.Env, expr string) (cel.Program, error) {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("does not compile: %s", iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must yield a bool, yields %s", ast.OutputType())
	}
	cost, err := env.EstimateCost(ast, sizeEstimator{})
	if err != nil {
		return nil, fmt.Errorf("cost cannot be estimated: %w", err)
	}
	if cost.Max > MaxRuleCost {
		return nil, fmt.Errorf("may cost up to %d units per alert, more than %d: simplify it (nested loops over lists?)", cost.Max, MaxRuleCost)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("cannot be planned: %w", err)
	}
	return prg, nil
}
