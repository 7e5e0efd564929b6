package allinone

import (
	"context"
	"fmt"
	"google.golang.org/grpc"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-health/herald/platform/acklink"
	"github.com/herald-health/herald/platform/mtls"
	ackv1 "github.com/herald-health/herald/proto/gen/herald/acknowledgement/v1"
	eventsv1 "github.com/herald-health/herald/proto/gen/herald/events/v1"
	intakev1 "github.com/herald-health/herald/proto/gen/herald/intake/v1"
	"github.com/herald-health/herald/services/notification"
)

// simulator is synthetic traffic for `make run`: flagged reports arriving
// through gRPC and HL7 over MLLP in a realistic mix of categories, and
// clinicians who acknowledge some alerts by their link, decline others, and
// ignore the rest (which then climb the escalation ladder to the fail-safe
// queue). Every patient detail is synthetic.
type simulator struct {
	intake   intakev1.IntakeServiceClient
	ack      ackv1.AcknowledgementServiceClient
	mllpAddr string
	// mllpTLS is the identity the simulated sender presents (nil: plain TCP).
	mllpTLS *mtls.Source
	// as signs the simulated person in (their access token on a call);
	// nil: calls carry no person, which only a run with authorization off
	// (-insecure) accepts.
	as func(person string) []grpc.CallOption
	// noDeclines is set when nobody can sign in while authorization is on
	// (make run -idp=false): a decline is a person's command, refused
	// without a token, so the simulated recipients never decline and
	// acknowledge by their link instead (the development acknowledge page
	// identifies the link's recipient). The banner and the README say so.
	noDeclines bool
	links      *acklink.Verifier
	every      time.Duration
	log        *slog.Logger

	mu    sync.Mutex
	acted map[string]bool // alert id -> the simulated clinician has acted
	seq   int
}

// fate is what the simulated clinicians do about an alert.
type fate int

const (
	fateAcknowledge fate = iota + 1 // the first recipient accepts it
	fateDecline                     // the first recipient declines; the next step accepts
	fateIgnore                      // nobody answers: escalation to the fail-safe queue
)

// fateOf is a deterministic function of the alert id: 45% acknowledged,
// 15% declined then acknowledged, 40% ignored.
func fateOf(alertID string) fate {
	h := fnv.New32a()
	_, _ = h.Write([]byte(alertID))
	switch n := h.Sum32() % 100; {
	case n < 45:
		return fateAcknowledge
	case n < 60:
		return fateDecline
	default:
		return fateIgnore
	}
}

var referrers = map[string][]string{
	"RZZ": {"RZZ-C0001", "7100002", "7100003", "RZZ-C0007"},
	"RZY": {"RZY-K01", "7200002"},
}

// weighted categories: critical findings are rare, significant ones common.
var categoryMix = []eventsv1.Category{
	eventsv1.Category_CATEGORY_CRITICAL, eventsv1.Category_CATEGORY_CRITICAL,
	eventsv1.Category_CATEGORY_URGENT, eventsv1.Category_CATEGORY_URGENT, eventsv1.Category_CATEGORY_URGENT,
	eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED, eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED,
	eventsv1.Category_CATEGORY_SIGNIFICANT_UNEXPECTED, eventsv1.Category_CATEGORY_CANCER, eventsv1.Category_CATEGORY_CANCER,
}

// run raises an alert every s.every and reacts to captured notifications
// until ctx ends.
func (s *simulator) run(ctx context.Context, capture *notification.Capture) {
	msgs := capture.Subscribe(1024)
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	s.raise(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.raise(ctx)
		case m := <-msgs:
			s.react(ctx, m)
		}
	}
}

func (s *simulator) raise(ctx context.Context) {
	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()
	tenant := "RZZ"
	if n%3 == 0 {
		tenant = "RZY"
	}
	refs := referrers[tenant]
	referrer := refs[n%len(refs)]
	category := categoryMix[rand.IntN(len(categoryMix))]
	if n%3 == 1 {
		// Critical findings are rarer in life, but they are what a newcomer
		// should see escalate within the first minute.
		category = eventsv1.Category_CATEGORY_CRITICAL
	}
	accession := fmt.Sprintf("SIM%s%06d", time.Now().Format("0102150405"), n)
	nhs := testNHSNumber(n)
	var err error
	if n%4 == 0 {
		err = s.raiseHL7(ctx, tenant, accession, nhs, referrer, category, n)
	} else {
		_, err = s.intake.RaiseAlert(ctx, &intakev1.RaiseAlertRequest{Report: &intakev1.Report{
			Tenant:          tenant,
			SourceSystem:    "simulator",
			SourceMessageId: accession,
			Accession:       accession,
			Patient:         &eventsv1.Patient{NhsNumber: nhs, FamilyName: "SYNTHETIC", GivenName: "PATIENT", BirthDate: "1970-01-01"},
			Exam:            &eventsv1.Exam{Code: "CCHAPC", CodeSystem: "NICIP", Modality: "CT"},
			SourceFlag:      &eventsv1.SourceFlag{Category: category},
			ReportStatus:    eventsv1.ReportStatus_REPORT_STATUS_FINAL,
			Referrer:        &eventsv1.Clinician{Id: referrer},
			Encounter:       &eventsv1.Encounter{PatientClass: []string{"E", "I", "O"}[n%3]},
			ReportText:      "Synthetic report for the Herald demo.",
			ReportedAt:      timestamppb.Now(),
		}})
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("simulator could not raise an alert", "error", err.Error())
	}
}

// hl7Template is the reference ORU^R01 with the parts the simulator varies.
const hl7Template = "MSH|^~\\&|CRIS|%[1]s|HERALD|REGIONNET|%[2]s||ORU^R01^ORU_R01|%[3]s|P|2.4|||AL|NE|GBR|UNICODE UTF-8\r" +
	"PID|1||%[4]s^^^NHS^NH||SYNTHETIC^PATIENT^^^MX||19700101|U\r" +
	"PV1|1|E|ED^MAJ^07^%[1]s01|||||%[5]s^REFERRER^SAM^^^DR\r" +
	"ORC|RE|ORD%[6]d^ICE|%[3]s^CRIS||CM||||%[2]s|||%[5]s^REFERRER^SAM^^^DR\r" +
	"OBR|1|ORD%[6]d^ICE|%[3]s^CRIS|XCHES^XR Chest^NICIP|||%[2]s|||||||||%[5]s^REFERRER^SAM^^^DR||||||%[2]s||RAD|F||||||||R9876543&RADIOLOGIST&JO\r" +
	"OBX|1|TX|RPT^Report text^L|1|Synthetic report for the Herald demo.||||||F\r" +
	"OBX|2|CE|ALERTCAT^Radiology alert category^L|1|%[7]s^Alert^L|||%[8]s|||F"

func (s *simulator) raiseHL7(ctx context.Context, tenant, accession, nhs, referrer string, c eventsv1.Category, n int) error {
	code := strings.TrimPrefix(c.String(), "CATEGORY_")
	flag := ""
	if c == eventsv1.Category_CATEGORY_CRITICAL {
		flag = "AA"
	}
	msg := fmt.Sprintf(hl7Template, tenant, time.Now().UTC().Format("20060102150405"), accession, nhs, referrer, n, code, flag)
	var d net.Dialer
	dial := d.DialContext
	if s.mllpTLS != nil {
		dial = s.mllpTLS.Dialer(nil, "")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := dial(ctx, "tcp", s.mllpAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("\x0b" + msg + "\x1c\r")); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	nr, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if !strings.Contains(string(buf[:nr]), "MSA|AA") {
		return fmt.Errorf("intake did not accept the simulated HL7 message: %q", strings.SplitN(string(buf[:nr]), "\r", 3)[1])
	}
	return nil
}

// react plays the recipient of a captured message.
func (s *simulator) react(ctx context.Context, m notification.Message) {
	if m.Data.AckLink == "" || m.Data.Failsafe {
		return
	}
	alertID := m.Data.AlertID
	s.mu.Lock()
	if s.acted[alertID] {
		s.mu.Unlock()
		return
	}
	f := fateOf(alertID)
	act := f == fateAcknowledge || f == fateDecline
	if act {
		s.acted[alertID] = true
	}
	s.mu.Unlock()
	if !act {
		return
	}
	delay := time.Duration(3+rand.IntN(6)) * time.Second
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		if s.answer(f, m.Data.Step) == answerDecline {
			s.decline(ctx, m)
			s.mu.Lock()
			delete(s.acted, alertID) // the next step's recipient will accept
			s.mu.Unlock()
			return
		}
		s.clickLink(ctx, m.Data.AckLink)
	}()
}

// answer is how the simulated recipient of a message of step answers an
// alert of fate f that they act on.
type answer int

const (
	answerLink    answer = iota + 1 // acknowledges by the message's link
	answerDecline                   // declines through the API, as themselves
)

func (s *simulator) answer(f fate, step uint32) answer {
	if f == fateDecline && step == 0 && !s.noDeclines {
		return answerDecline
	}
	return answerLink
}

func (s *simulator) decline(ctx context.Context, m notification.Message) {
	token := m.Data.AckLink[strings.LastIndex(m.Data.AckLink, "/")+1:]
	c, err := s.links.Verify(token, time.Now())
	if err != nil {
		return
	}
	var opts []grpc.CallOption
	if s.as != nil {
		opts = s.as(c.PersonID)
	}
	_, err = s.ack.Decline(ctx, &ackv1.DeclineRequest{
		AlertId:   c.AlertID,
		Reason:    eventsv1.DeclineReason_DECLINE_REASON_WRONG_TEAM,
		Note:      "simulated: not my team",
		RequestId: "sim-decline-" + c.TokenID,
	}, opts...)
	if err != nil && ctx.Err() == nil {
		s.log.Info("simulated decline not recorded", "alert_id", c.AlertID, "error", err.Error())
	}
}

// clickLink acknowledges as a clinician does: a POST to the acknowledge
// link (the dev identity is the link's recipient).
func (s *simulator) clickLink(ctx context.Context, link string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, link, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	_ = resp.Body.Close()
}

// testNHSNumber returns the n-th valid NHS number in the 999 test range
// (never issued to a patient), computed with the modulus 11 check digit.
func testNHSNumber(n int) string {
	for i := n; ; i++ {
		base := fmt.Sprintf("999%06d", i%1000000)
		sum := 0
		for j := 0; j < 9; j++ {
			sum += int(base[j]-'0') * (10 - j)
		}
		check := 11 - sum%11
		if check == 11 {
			check = 0
		}
		if check != 10 {
			return base + fmt.Sprint(check)
		}
	}
}
