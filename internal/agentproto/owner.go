package agentproto

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxOwnerID is the largest uid or gid --format-owner accepts: 2^31-2.
// Ids are kept in the range every signed 32-bit consumer reads alike, and
// 2^31-1 is left out as the "no id" some tools write for -1.
const MaxOwnerID = 1<<31 - 2

// FormatOwner is mount's --format-owner: who may write in the root of a
// filesystem the mount itself makes (right after a granted format; never
// on a filesystem that was there). As ECS does for its managed EBS volumes
// and a non-root container user (docs/contracts.md):
//   - UID:GID: the root directory becomes root:GID, mode 2775 (the group
//     writes; the setgid bit keeps new entries in the group);
//   - UID alone: the root directory becomes UID:0, mode 0755.
type FormatOwner struct {
	UID    int
	GID    int
	HasGID bool
}

// String is the flag's value for o: UID or UID:GID.
func (o FormatOwner) String() string {
	if o.HasGID {
		return fmt.Sprintf("%d:%d", o.UID, o.GID)
	}
	return strconv.Itoa(o.UID)
}

// ParseFormatOwner reads --format-owner's value: "" (none: nil), UID or
// UID:GID, decimal without sign or leading zero, each at most MaxOwnerID.
// Names are refused: only the image knows them, and the agent never looks
// into an image. The agent, the reconciler and the world's fake agent all
// use this one rule, and the mount document's allowedPattern admits exactly
// what it admits (functions/template_test.go).
func ParseFormatOwner(s string) (*FormatOwner, error) {
	if s == "" {
		return nil, nil
	}
	uid, gid, hasGID := strings.Cut(s, ":")
	var o FormatOwner
	var err error
	if o.UID, err = parseOwnerID(uid); err != nil {
		return nil, fmt.Errorf("invalid format owner %q: uid: %w", s, err)
	}
	if hasGID {
		if o.GID, err = parseOwnerID(gid); err != nil {
			return nil, fmt.Errorf("invalid format owner %q: gid: %w", s, err)
		}
		o.HasGID = true
	}
	return &o, nil
}

func parseOwnerID(s string) (int, error) {
	if s == "" || len(s) > 10 {
		return 0, fmt.Errorf("want a number from 0 to %d", MaxOwnerID)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number (names are not accepted: give numeric ids)", s)
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > MaxOwnerID {
		return 0, fmt.Errorf("%s is out of range: want 0 to %d", s, MaxOwnerID)
	}
	return int(n), nil
}
