package allinone

import (
	"bytes"
	"strings"
	"testing"
)

// With nobody able to sign in while authorization is on (make run
// -idp=false), the simulated recipients never decline: a decline is a
// person's command, which the services refuse without a token, so it would
// only be refused again and again. They acknowledge by their link instead,
// and the banner says what such a run cannot do.
func TestWithoutAProviderTheSimulatorDoesNotDeclineAndTheBannerSaysSo(t *testing.T) {
	signedIn := &simulator{}
	noProvider := &simulator{noDeclines: true}
	if got := signedIn.answer(fateDecline, 0); got != answerDecline {
		t.Errorf("with people signed in, the first recipient of a declined alert: %v, want a decline", got)
	}
	if got := signedIn.answer(fateDecline, 1); got != answerLink {
		t.Errorf("with people signed in, the next step's recipient: %v, want the link", got)
	}
	for _, f := range []fate{fateAcknowledge, fateDecline} {
		if got := noProvider.answer(f, 0); got != answerLink {
			t.Errorf("without a provider, fate %v at step 1: %v, want the link (no decline)", f, got)
		}
	}

	var with, without bytes.Buffer
	printBanner(&with, banner{})
	printBanner(&without, banner{noSignIn: true})
	if strings.Contains(with.String(), "-idp=false") {
		t.Errorf("a run with the provider prints the -idp=false note:\n%s", with.String())
	}
	for _, want := range []string{"-idp=false", "nobody can sign in", "never decline", "refused"} {
		if !strings.Contains(without.String(), want) {
			t.Errorf("the banner of a run without the provider does not say %q:\n%s", want, without.String())
		}
	}
}
