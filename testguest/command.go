package guest

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Op is what a console command asks for.
type Op int

// The console commands.
const (
	OpPing Op = iota + 1
	OpWrite
	OpRead
	OpIP
	OpMem
	OpPowerOff
	OpEcho
	OpJoin
)

// Command is one parsed console line.
type Command struct {
	Op   Op
	Text string     // OpWrite only
	Addr netip.Addr // OpEcho: the address; OpJoin: the group
}

// MaxText bounds the text of a write: the console's line discipline passes
// at most 4095 bytes per line, and a record must fit in one read.
const MaxText = 4000

// Errors of ParseCommand. ErrEmpty lines get no answer; the others are
// answered with "FVGUEST ERR <error>".
var (
	ErrEmpty   = errors.New("empty line")
	ErrUnknown = errors.New("unknown command")
	ErrUsage   = errors.New("usage")
	ErrText    = errors.New("bad text")
)

// ParseCommand parses one console line. The command word is followed by
// one space; the rest of the line is TEXT, kept as it is, so that "write a
// b" writes "a b". Trailing CR (a terminal's Enter) and surrounding blanks
// are ignored.
func ParseCommand(line string) (Command, error) {
	line = strings.Trim(line, " \t\r\n")
	if line == "" {
		return Command{}, ErrEmpty
	}
	word, rest, hasRest := strings.Cut(line, " ")
	noArgs := func(op Op) (Command, error) {
		if hasRest {
			return Command{}, fmt.Errorf("%w: %s takes no argument", ErrUsage, word)
		}
		return Command{Op: op}, nil
	}
	switch word {
	case "ping":
		return noArgs(OpPing)
	case "read":
		return noArgs(OpRead)
	case "ip":
		return noArgs(OpIP)
	case "mem":
		return noArgs(OpMem)
	case "poweroff":
		return noArgs(OpPowerOff)
	case "echo":
		a, err := netip.ParseAddr(rest)
		if !hasRest || err != nil || !a.Is4() {
			return Command{}, fmt.Errorf("%w: echo IPV4-ADDRESS", ErrUsage)
		}
		return Command{Op: OpEcho, Addr: a}, nil
	case "join":
		a, err := netip.ParseAddr(rest)
		if !hasRest || err != nil || !a.Is4() || !a.IsMulticast() {
			return Command{}, fmt.Errorf("%w: join IPV4-MULTICAST-GROUP", ErrUsage)
		}
		return Command{Op: OpJoin, Addr: a}, nil
	case "write":
		if !hasRest || rest == "" {
			return Command{}, fmt.Errorf("%w: write TEXT", ErrUsage)
		}
		if err := CheckText(rest); err != nil {
			return Command{}, err
		}
		return Command{Op: OpWrite, Text: rest}, nil
	}
	return Command{}, ErrUnknown
}

// CheckText accepts what can be echoed back on one console line: valid
// UTF-8 without control characters, at most MaxText bytes.
func CheckText(s string) error {
	if len(s) > MaxText {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrText, len(s), MaxText)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not UTF-8", ErrText)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%w: control character", ErrText)
	}
	return nil
}
