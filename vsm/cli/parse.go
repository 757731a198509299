package cli

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Syntax error kinds, wrapped by *SyntaxError (match with errors.Is).
var (
	ErrInvalid    = errors.New("% Invalid command at '^' marker.")
	ErrIncomplete = errors.New("% Incomplete command at '^' marker.")
	ErrAmbiguous  = errors.New("% Ambiguous command at '^' marker.")
	ErrRange      = errors.New("Invalid range at '^' marker.")
)

// SyntaxError is a line the grammar rejects. Its text is the NX-OS one:
// the line, a caret under the bad token, and the message. Front ends that
// echo the line after a prompt can use Pos to place the caret themselves.
type SyntaxError struct {
	Line string
	// Pos is the byte offset of the bad token (len(Line) when the line
	// ended too early).
	Pos int
	Err error
}

func (e *SyntaxError) Error() string {
	col := utf8.RuneCountInString(e.Line[:e.Pos])
	return e.Line + "\n" + strings.Repeat(" ", col) + "^\n" + e.Err.Error()
}

func (e *SyntaxError) Unwrap() error { return e.Err }

// errNoMatch is an argument checker's "not this kind of token".
var errNoMatch = errors.New("no match")

// node is one word of the grammar: a keyword (matched by unique prefix,
// case-insensitively) or an argument (checked by its kind). A node with
// run set may end a command.
type node struct {
	word string
	arg  *argKind
	key  string // where an argument's value is stored
	help string
	next []*node
	run  handler
}

// argKind is a kind of argument: its help name and its checker, which
// returns the canonical value, errNoMatch, or ErrRange.
type argKind struct {
	name  string
	check func(string) (string, error)
	rest  bool // takes the rest of the line verbatim (description)
}

type handler func(s *Session, a *args) (string, error)

// args are a parsed command's keywords and argument values.
type args struct {
	kw  map[string]bool
	val map[string]string
}

func (a *args) has(word string) bool  { return a.kw[word] }
func (a *args) str(key string) string { return a.val[key] }

func (a *args) int(key string) int {
	n, _ := strconv.Atoi(a.val[key])
	return n
}

func kw(word, help string, next ...*node) *node {
	return &node{word: word, help: help, next: next}
}

func arg(key string, kind *argKind, help string, next ...*node) *node {
	return &node{arg: kind, key: key, help: help, next: next}
}

// do marks n as a possible end of a command.
func (n *node) do(h handler) *node {
	n.run = h
	return n
}

// numArg is an integer in lo..hi.
func numArg(lo, hi int) *argKind {
	return &argKind{name: fmt.Sprintf("<%d-%d>", lo, hi), check: func(s string) (string, error) {
		if s == "" || len(s) > 12 || strings.TrimLeft(s, "0123456789") != "" {
			return "", errNoMatch
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return "", ErrRange
		}
		return strconv.Itoa(n), nil
	}}
}

// wordArg is one token of at most maxLen bytes.
func wordArg(maxLen int) *argKind {
	return &argKind{name: "WORD", check: func(s string) (string, error) {
		if len(s) > maxLen {
			return "", ErrRange
		}
		return s, nil
	}}
}

var lineArg = &argKind{name: "LINE", rest: true, check: func(s string) (string, error) { return s, nil }}

type token struct {
	text string
	pos  int
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

func tokenize(line string) []token {
	var toks []token
	for i := 0; i < len(line); {
		if isSpace(line[i]) {
			i++
			continue
		}
		j := i
		for j < len(line) && !isSpace(line[j]) {
			j++
		}
		toks = append(toks, token{line[i:j], i})
		i = j
	}
	return toks
}

// match picks the node a token selects among cands: an exact keyword, else
// the one keyword it is a prefix of, else the first argument that accepts
// it. It returns the canonical value for an argument.
func match(cands []*node, tok string) (*node, string, error) {
	var prefixed []*node
	for _, n := range cands {
		if n.arg != nil {
			continue
		}
		if strings.EqualFold(n.word, tok) {
			return n, n.word, nil
		}
		if len(tok) <= len(n.word) && strings.EqualFold(n.word[:len(tok)], tok) {
			prefixed = append(prefixed, n)
		}
	}
	switch len(prefixed) {
	case 1:
		return prefixed[0], prefixed[0].word, nil
	case 0:
	default:
		return nil, "", ErrAmbiguous
	}
	err := ErrInvalid
	for _, n := range cands {
		if n.arg == nil {
			continue
		}
		v, cerr := n.arg.check(tok)
		if cerr == nil {
			return n, v, nil
		}
		if errors.Is(cerr, ErrRange) {
			err = ErrRange
		}
	}
	return nil, "", err
}

// parse walks the grammar from roots along the line's tokens. It returns
// the last node matched (nil for an empty line) and the arguments; a
// *SyntaxError when a token fits nowhere or the command is incomplete.
func parse(roots []*node, line string) (*node, *args, error) {
	a := &args{kw: map[string]bool{}, val: map[string]string{}}
	toks := tokenize(line)
	cands := roots
	var last *node
	for _, t := range toks {
		n, v, err := match(cands, t.text)
		if err != nil {
			return nil, nil, &SyntaxError{Line: line, Pos: t.pos, Err: err}
		}
		last = n
		if n.arg == nil {
			a.kw[n.word] = true
		} else if n.arg.rest {
			a.val[n.key] = strings.TrimRight(line[t.pos:], " \t\r\n\v\f")
			break
		} else {
			a.val[n.key] = v
		}
		cands = n.next
	}
	if last != nil && last.run == nil {
		return nil, nil, &SyntaxError{Line: line, Pos: len(line), Err: ErrIncomplete}
	}
	return last, a, nil
}

// walk follows all tokens but the partial last one (if the line does not
// end in a space) and returns the candidates for the next word and that
// partial word; complete says whether the words so far are a command.
// A LINE argument swallows the rest: no candidates, complete.
func walk(roots []*node, line string) (cands []*node, partial string, complete bool, err error) {
	toks := tokenize(line)
	if len(toks) > 0 && (line == "" || !isSpace(line[len(line)-1])) {
		partial = toks[len(toks)-1].text
		toks = toks[:len(toks)-1]
	}
	cands = roots
	for _, t := range toks {
		n, _, err := match(cands, t.text)
		if err != nil {
			return nil, "", false, &SyntaxError{Line: line, Pos: t.pos, Err: err}
		}
		if n.arg != nil && n.arg.rest {
			return nil, partial, true, nil
		}
		cands, complete = n.next, n.run != nil
	}
	return cands, partial, complete, nil
}

// helpLines lists the candidates that fit partial, NX-OS style: keyword
// (or argument name) padded to a column, then the description.
func helpLines(cands []*node, partial string, complete bool) string {
	type row struct{ name, help string }
	var kws, argsRows []row
	for _, n := range cands {
		if n.arg == nil {
			if len(partial) <= len(n.word) && strings.EqualFold(n.word[:len(partial)], partial) {
				kws = append(kws, row{n.word, n.help})
			}
			continue
		}
		if partial == "" {
			argsRows = append(argsRows, row{n.arg.name, n.help})
		} else if _, err := n.arg.check(partial); err == nil {
			argsRows = append(argsRows, row{n.arg.name, n.help})
		}
	}
	slices.SortFunc(kws, func(a, b row) int { return strings.Compare(a.name, b.name) })
	rows := append(kws, argsRows...)
	if complete && partial == "" {
		rows = append(rows, row{"<CR>", ""})
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.name))
	}
	var b strings.Builder
	for _, r := range rows {
		if r.help == "" {
			fmt.Fprintf(&b, "  %s\n", r.name)
		} else {
			fmt.Fprintf(&b, "  %-*s  %s\n", width, r.name, r.help)
		}
	}
	return b.String()
}

// completeWord completes partial among the keyword candidates: the single
// match (with a trailing space), else the longest common prefix and the
// candidates.
func completeWord(cands []*node, partial string) (string, []string) {
	var words []string
	for _, n := range cands {
		if n.arg == nil && len(partial) <= len(n.word) && strings.EqualFold(n.word[:len(partial)], partial) {
			words = append(words, n.word)
		}
	}
	slices.Sort(words)
	words = slices.Compact(words)
	switch len(words) {
	case 0:
		return partial, nil
	case 1:
		return words[0] + " ", nil
	}
	common := words[0]
	for _, w := range words[1:] {
		for !strings.HasPrefix(w, common) {
			common = common[:len(common)-1]
		}
	}
	if len(common) < len(partial) {
		common = partial
	}
	return common, words
}
