package agentproto

import (
	"strconv"
	"testing"
)

func TestParseFormatOwner(t *testing.T) {
	good := map[string]FormatOwner{
		"0":                     {},
		"1000":                  {UID: 1000},
		"1000:1000":             {UID: 1000, GID: 1000, HasGID: true},
		"0:50":                  {GID: 50, HasGID: true},
		"2147483646:2147483646": {UID: MaxOwnerID, GID: MaxOwnerID, HasGID: true},
	}
	for s, want := range good {
		o, err := ParseFormatOwner(s)
		if err != nil || o == nil || *o != want {
			t.Errorf("ParseFormatOwner(%q) = %+v, %v; want %+v", s, o, err, want)
			continue
		}
		if o.String() != s {
			t.Errorf("%+v.String() = %q, want %q", o, o.String(), s)
		}
	}
	if o, err := ParseFormatOwner(""); o != nil || err != nil {
		t.Errorf(`ParseFormatOwner("") = %+v, %v; want none`, o, err)
	}
	for _, s := range []string{"2147483647", "4294967295", "99999999999", "-1", "+1", "01", "1000:", ":1000", "1000:1000:1", "app", "app:staff",
		"1000:staff", "app:1000", " 1000", "1000 ", "1e3", "0x10", "１０００", "1000\n"} {
		if o, err := ParseFormatOwner(s); err == nil {
			t.Errorf("ParseFormatOwner(%q) = %+v; want an error", s, o)
		}
	}
	if _, err := ParseFormatOwner(strconv.Itoa(MaxOwnerID + 1)); err == nil {
		t.Error("MaxOwnerID+1 accepted")
	}
}
