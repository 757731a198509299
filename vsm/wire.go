package vsm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/flashvisor/flashvisor/api"
)

// ErrBadMessage wraps every error of a message that does not decode or
// validate, ErrMessageTooBig a line over the size limit (which is also a
// bad message).
var (
	ErrBadMessage    = errors.New("bad control message")
	ErrMessageTooBig = fmt.Errorf("%w: too big", ErrBadMessage)
)

// readLine returns the next newline-terminated line without its newline,
// at most max bytes (the newline not counted). A longer line is an error
// (ErrMessageTooBig) and the stream is unusable afterwards. A final line
// without a newline is returned with io.ErrUnexpectedEOF.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > max+1 {
			return nil, fmt.Errorf("%w: over %d bytes", ErrMessageTooBig, max)
		}
		switch {
		case err == nil:
			if buf == nil {
				buf = make([]byte, 0, len(chunk))
			}
			buf = append(buf, chunk...)
			return buf[:len(buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			buf = append(buf, chunk...)
		case errors.Is(err, io.EOF):
			if len(buf)+len(chunk) == 0 {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// readMessage reads and decodes one control message. Blank lines are
// skipped. Decoding errors are returned as they are: the caller closes
// the connection (api: "either side closes the connection on a message
// that does not decode or validate").
func readMessage(r *bufio.Reader) (api.VSMMessage, error) {
	for {
		line, err := readLine(r, api.VSMMaxMessageBytes)
		if err != nil {
			return api.VSMMessage{}, err
		}
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			continue
		}
		m, err := api.DecodeVSMMessage(line)
		if err != nil {
			return m, fmt.Errorf("%w: %w", ErrBadMessage, err)
		}
		return m, nil
	}
}

// encodeMessage renders m as one line.
func encodeMessage(m *api.VSMMessage) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	if len(b) > api.VSMMaxMessageBytes {
		return nil, fmt.Errorf("encode %s message: %d bytes, at most %d", m.Type, len(b), api.VSMMaxMessageBytes)
	}
	return append(b, '\n'), nil
}
