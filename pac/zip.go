package pac

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"sort"
	"sync"
	"time"
)

// zipFile is one entry of a generated zip.
type zipFile struct {
	Name string
	Mode fs.FileMode
	Data []byte
}

// buildZip writes files in name order with one fixed modification time, so the same inputs
// give the same bytes (and the same ETag).
func buildZip(files []zipFile) ([]byte, error) {
	modified := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: modified}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// artifact is a generated download and its entity tag.
type artifact struct {
	key  string
	data []byte
	etag string
}

// artifactCache keeps the last build of each named download until its key changes.
type artifactCache struct {
	mu    sync.Mutex
	items map[string]artifact
}

// get returns the cached artifact for name if it was built for key, else builds it.
func (c *artifactCache) get(name, key string, build func() ([]byte, error)) (artifact, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.items[name]; ok && a.key == key {
		return a, nil
	}
	data, err := build()
	if err != nil {
		return artifact{}, err
	}
	sum := sha256.Sum256(data)
	a := artifact{key: key, data: data, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
	if c.items == nil {
		c.items = map[string]artifact{}
	}
	c.items[name] = a
	return a, nil
}
