package people

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// BoltFile is the store's file name in data_dir.
const BoltFile = "people.db"

// boltLockWait bounds the wait for the file lock another process holds.
const boltLockWait = time.Second

// boltBackend keeps the records in a bbolt file: one writer at a time, fsynced commits.
type boltBackend struct{ db *bolt.DB }

// NewBolt opens (creating it if needed) the store file in dataDir. Only one process may
// have it open: while a broker runs, another one gets ErrStoreBusy after a second.
func NewBolt(dataDir string) (Backend, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	path := filepath.Join(dataDir, BoltFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltLockWait})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w", path, ErrStoreBusy)
	}
	if err != nil {
		return nil, fmt.Errorf("people store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("people store %s: %w", path, err)
	}
	return &boltBackend{db}, nil
}

func (b *boltBackend) bucket(tx *bolt.Tx, name string) (*bolt.Bucket, error) {
	bk := tx.Bucket([]byte(name))
	if bk == nil {
		return nil, fmt.Errorf("people store: no bucket %q", name)
	}
	return bk, nil
}

func (b *boltBackend) Get(_ context.Context, bucket, key string) ([]byte, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		bk, err := b.bucket(tx, bucket)
		if err != nil {
			return err
		}
		if v := bk.Get([]byte(key)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out, err
}

func (b *boltBackend) Scan(_ context.Context, bucket, from, to string, fn func(string, []byte) error) error {
	return b.db.View(func(tx *bolt.Tx) error {
		bk, err := b.bucket(tx, bucket)
		if err != nil {
			return err
		}
		c := bk.Cursor()
		k, v := c.First()
		if from != "" {
			k, v = c.Seek([]byte(from))
		}
		for ; k != nil; k, v = c.Next() {
			if to != "" && string(k) >= to {
				break
			}
			if err := fn(string(k), bytes.Clone(v)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *boltBackend) Update(_ context.Context, bucket, key string, fn func([]byte) ([]byte, error)) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk, err := b.bucket(tx, bucket)
		if err != nil {
			return err
		}
		old := bk.Get([]byte(key))
		v, err := fn(bytes.Clone(old))
		if err != nil {
			return err
		}
		if v == nil {
			return bk.Delete([]byte(key))
		}
		return bk.Put([]byte(key), v)
	})
}

func (b *boltBackend) Put(_ context.Context, bucket string, kvs map[string][]byte) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk, err := b.bucket(tx, bucket)
		if err != nil {
			return err
		}
		return putAll(bk, kvs)
	})
}

// putAll stores each value of kvs under its key in bk.
func putAll(bk *bolt.Bucket, kvs map[string][]byte) error {
	for k, v := range kvs {
		if err := bk.Put([]byte(k), v); err != nil {
			return err
		}
	}
	return nil
}

func (b *boltBackend) DeleteRange(_ context.Context, bucket, from, to string) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk, err := b.bucket(tx, bucket)
		if err != nil {
			return err
		}
		// Keys are collected first: deleting under a moving cursor skips entries.
		var keys [][]byte
		c := bk.Cursor()
		k, _ := c.First()
		if from != "" {
			k, _ = c.Seek([]byte(from))
		}
		for ; k != nil; k, _ = c.Next() {
			if to != "" && string(k) >= to {
				break
			}
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *boltBackend) Replace(_ context.Context, data map[string]map[string][]byte) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		for name, kvs := range data {
			if err := tx.DeleteBucket([]byte(name)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
				return err
			}
			bk, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			if err := putAll(bk, kvs); err != nil {
				return err
			}
		}
		return nil
	})
}

// Watch returns at once: only this process writes the file.
func (b *boltBackend) Watch(context.Context, func()) {}

func (b *boltBackend) Close() error { return b.db.Close() }
