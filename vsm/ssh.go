package vsm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/flashvisor/flashvisor/internal/atomicfile"
)

// SSHHostKeyFile is the SSH host key (ed25519, PKCS#8 PEM, 0600) in the
// state directory.
const SSHHostKeyFile = "ssh/host_ed25519"

// SSHUser is the only SSH user; its password is the API token.
const SSHUser = "admin"

// sshHandshakeTimeout bounds an unauthenticated connection.
const sshHandshakeTimeout = 30 * time.Second

// loadOrCreateSSHKey loads the host key, creating it on first start.
func loadOrCreateSSHKey(stateDir string, log *slog.Logger) (ssh.Signer, error) {
	path := filepath.Join(stateDir, SSHHostKeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("%w: %s: no PEM PRIVATE KEY block", ErrCorruptTrust, path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorruptTrust, path, err)
		}
		s, err := ssh.NewSignerFromKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorruptTrust, path, err)
		}
		return s, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read SSH host key: %w", err)
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate SSH host key: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode SSH host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create SSH directory: %w", err)
	}
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, fmt.Errorf("store SSH host key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		return nil, fmt.Errorf("SSH host key: %w", err)
	}
	log.Info("generated the SSH host key", "fingerprint", ssh.FingerprintSHA256(s.PublicKey()))
	return s, nil
}

// sshServer serves the CLI over SSH (VSM-4).
type sshServer struct {
	cfg        *ssh.ServerConfig
	newSession func() Session
	log        *slog.Logger
	wg         sync.WaitGroup
}

func newSSHServer(key ssh.Signer, token tokenHash, newSession func() Session, banner string, log *slog.Logger) *sshServer {
	cfg := &ssh.ServerConfig{
		MaxAuthTries: 3,
		PasswordCallback: func(md ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			// Both checks always run: the answer's timing says nothing
			// about which one failed.
			okUser := md.User() == SSHUser
			okPass := token.Matches(string(pw))
			if okUser && okPass {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("access denied")
		},
		BannerCallback: func(ssh.ConnMetadata) string { return banner },
	}
	cfg.AddHostKey(key)
	return &sshServer{cfg: cfg, newSession: newSession, log: log}
}

// serve accepts connections until ln is closed, then waits for the
// connections' goroutines. ctx cancels every open connection.
func (s *sshServer) serve(ctx context.Context, ln net.Listener) error {
	defer s.wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("ssh accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, c)
		}()
	}
}

func (s *sshServer) handle(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(sshHandshakeTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		s.log.Info("ssh login refused", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	nc.SetDeadline(time.Time{})
	s.log.Info("ssh login", "user", conn.User(), "remote", nc.RemoteAddr().String())
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(ch, creqs)
		}()
	}
	wg.Wait()
}

// session serves one session channel: a shell (with or without a pty) or
// one exec request.
func (s *sshServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var (
		t       *term.Terminal
		started bool
		width   int
		height  int
		mu      sync.Mutex // guards t between the shell and window-change
	)
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			req.Reply(!started, nil)
			if w, h, ok := parsePtyReq(req.Payload); ok {
				width, height = w, h
			}
		case "window-change":
			if len(req.Payload) >= 8 {
				w := int(binary.BigEndian.Uint32(req.Payload[0:]))
				h := int(binary.BigEndian.Uint32(req.Payload[4:]))
				mu.Lock()
				if t != nil && w > 0 && h > 0 {
					t.SetSize(w, h)
				}
				mu.Unlock()
			}
			req.Reply(false, nil)
		case "env":
			req.Reply(true, nil)
		case "shell":
			if started {
				req.Reply(false, nil)
				continue
			}
			started = true
			req.Reply(true, nil)
			mu.Lock()
			t = term.NewTerminal(ch, "")
			if width > 0 && height > 0 {
				t.SetSize(width, height)
			}
			mu.Unlock()
			go func() {
				s.shell(t)
				sendExit(ch, 0)
				ch.Close()
			}()
		case "exec":
			if started {
				req.Reply(false, nil)
				continue
			}
			started = true
			cmd, ok := parseString(req.Payload)
			req.Reply(ok, nil)
			if !ok {
				return
			}
			go func() {
				code := s.exec(ch, cmd)
				sendExit(ch, code)
				ch.Close()
			}()
		default:
			req.Reply(false, nil)
		}
	}
}

// exec runs the lines of one "ssh admin@vsm CMD" request in one session.
func (s *sshServer) exec(w io.Writer, cmd string) int {
	sess := s.newSession()
	for _, line := range strings.Split(strings.ReplaceAll(cmd, "\r", ""), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		out, err := sess.Exec(line)
		io.WriteString(w, crlf(out))
		if err != nil {
			io.WriteString(w, crlf(errorText(err)))
			return 1
		}
		if sess.Done() {
			break
		}
	}
	return 0
}

// shell runs an interactive session on t: '?' prints help for the line so
// far and keeps the line, Tab completes, "exit" in exec mode ends it.
func (s *sshServer) shell(t *term.Terminal) {
	sess := s.newSession()
	t.SetPrompt(sess.Prompt())
	t.AutoCompleteCallback = func(line string, pos int, key rune) (string, int, bool) {
		switch key {
		case '?':
			fmt.Fprintf(t, "%s%s?\n%s", sess.Prompt(), line[:pos], ensureNL(sess.Help(line[:pos])))
			return line, pos, true
		case '\t':
			done, cands := sess.Complete(line[:pos])
			if len(cands) > 1 {
				fmt.Fprintf(t, "%s%s\n%s\n", sess.Prompt(), line[:pos], strings.Join(cands, "  "))
			}
			return done + line[pos:], len(done), true
		}
		return "", 0, false
	}
	for {
		line, err := t.ReadLine()
		if err != nil {
			return // EOF (client closed or Ctrl-D)
		}
		out, err := sess.Exec(line)
		if out != "" {
			io.WriteString(t, ensureNL(out))
		}
		if err != nil {
			io.WriteString(t, ensureNL(errorText(err)))
		}
		if sess.Done() {
			return
		}
		t.SetPrompt(sess.Prompt())
	}
}

func ensureNL(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// crlf turns "\n" into "\r\n" for an exec channel (no terminal to do it).
func crlf(s string) string {
	s = ensureNL(s)
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func sendExit(ch ssh.Channel, code int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	ch.SendRequest("exit-status", false, b[:])
}

// parseString reads one SSH string (uint32 length, bytes).
func parseString(p []byte) (string, bool) {
	if len(p) < 4 {
		return "", false
	}
	n := binary.BigEndian.Uint32(p)
	if uint64(n) > uint64(len(p)-4) {
		return "", false
	}
	return string(p[4 : 4+n]), true
}

// parsePtyReq reads the width and height of a pty-req (RFC 4254 6.2).
func parsePtyReq(p []byte) (w, h int, ok bool) {
	termName, ok := parseString(p)
	if !ok {
		return 0, 0, false
	}
	rest := p[4+len(termName):]
	if len(rest) < 8 {
		return 0, 0, false
	}
	return int(binary.BigEndian.Uint32(rest)), int(binary.BigEndian.Uint32(rest[4:])), true
}
