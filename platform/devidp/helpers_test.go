package devidp

import "golang.org/x/oauth2"

func oauthS256(v string) oauth2.AuthCodeOption { return oauth2.S256ChallengeOption(v) }

func audienceParam(a string) oauth2.AuthCodeOption { return oauth2.SetAuthURLParam("audience", a) }

type tlog struct{ t interface{ Log(...any) } }

func (l tlog) Write(b []byte) (int, error) { l.t.Log(string(b)); return len(b), nil }

func testLog(t interface{ Log(...any) }) tlog { return tlog{t} }
