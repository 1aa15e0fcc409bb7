package config

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"reflect"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Agent file watching: events are gathered for watchSettle before the file is read, so
// that an editor's several steps (truncate, write, rename) are read once; a poll every
// watchPoll catches what the events missed (a file system without inotify, a replaced
// directory).
const (
	watchSettle = 100 * time.Millisecond
	watchPoll   = 2 * time.Second
)

// WatchAgent watches the agent configuration file path (through its directory, so that an
// editor's write to a new file renamed over the old one is seen) and calls apply with each
// new valid configuration, within about watchSettle of the change. An invalid edit goes to
// onError (the error names the field) and the configuration in force stays. loaded is the
// configuration the agent started with: an edit made before the watch began is applied
// too. It returns when ctx is done; an error only if the directory cannot be watched.
func WatchAgent(ctx context.Context, path string, loaded *Agent, apply func(*Agent), onError func(error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return err
	}
	var last [32]byte // unknown: the first check compares with loaded instead
	emptySum := sha256.Sum256(nil)
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	poll := time.NewTicker(watchPoll)
	defer poll.Stop()
	check := func() {
		sum := fileSum(abs)
		if sum == last || sum == ([32]byte{}) || sum == emptySum {
			return // unchanged, or missing or empty for a moment during a write
		}
		first := last == [32]byte{}
		last = sum
		cfg, err := LoadAgent(abs)
		if err != nil {
			onError(err)
			return
		}
		if first && reflect.DeepEqual(cfg, loaded) {
			return
		}
		apply(cfg)
	}
	check()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return nil
			}
			// Any change in the directory is looked at, not only one named like the file:
			// a symlinked file (a mounted ConfigMap) changes when its link target is
			// swapped. The checksum drops what did not change the file.
			settle.Reset(watchSettle)
		case err, ok := <-w.Errors:
			if ok {
				onError(err)
			}
		case <-settle.C:
			check()
		case <-poll.C:
			check()
		}
	}
}
