// Package prompt asks a person for a password or a secret: without echo when they are at a
// terminal, else as one line of piped input. The commands share it so that every secret
// is read the same way.
package prompt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// Terminal returns r as a file when it is an interactive terminal.
func Terminal(r io.Reader) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// Secret writes label to w, reads one line from the terminal tty without echoing it, and
// ends the line on w (the typed newline was not echoed either).
func Secret(tty *os.File, w io.Writer, label string) (string, error) {
	fmt.Fprint(w, label)
	b, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(w)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// Line reads one line from r without its line ending; input that ends without a newline
// is the last line.
func Line(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
