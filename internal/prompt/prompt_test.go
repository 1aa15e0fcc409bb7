package prompt

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("first\r\nsecond\nlast"))
	for _, want := range []string{"first", "second", "last", ""} {
		if got, err := Line(r); err != nil || got != want {
			t.Errorf("Line = %q, %v; want %q", got, err, want)
		}
	}
}

func TestTerminal(t *testing.T) {
	if _, ok := Terminal(strings.NewReader("x")); ok {
		t.Error("a string reader is a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "notatty")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := Terminal(f); ok {
		t.Error("a regular file is a terminal")
	}
}
