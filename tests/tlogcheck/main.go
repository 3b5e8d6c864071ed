// tlogcheck audits a log published as a C2SP tlog-tiles tree, independently of answerable:
// it verifies the checkpoint's signature with golang.org/x/mod/sumdb/note, reads the hash tiles
// through golang.org/x/mod/sumdb/tlog's TileHashReader (which checks every tile against the
// checkpoint's root), recomputes the root, and proves every entry of the entry bundles.
//
// Usage: tlogcheck DIR VERIFIER_KEY [--hashes-only]
// Prints "ok SIZE ROOT" and exits 0, or names the first problem and exits 1.
package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

// path maps a tile to its C2SP tlog-tiles path (sumdb's own paths also carry the height).
func path(t tlog.Tile) string {
	n := t.N
	groups := []string{fmt.Sprintf("%03d", n%1000)}
	for n /= 1000; n > 0; n /= 1000 {
		groups = append([]string{fmt.Sprintf("x%03d", n%1000)}, groups...)
	}
	name := strings.Join(groups, "/")
	if t.W < 1<<height {
		name += ".p/" + strconv.Itoa(t.W)
	}
	level := strconv.Itoa(t.L)
	if t.L < 0 {
		level = "entries"
	}
	return "tile/" + level + "/" + name
}

type dirReader struct{ dir string }

func (r dirReader) Height() int { return height }

func (r dirReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(filepath.Join(r.dir, path(t)))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (r dirReader) SaveTiles([]tlog.Tile, [][]byte) {}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: tlogcheck DIR VERIFIER_KEY [--hashes-only]")
	}
	dir, vkey := os.Args[1], os.Args[2]
	hashesOnly := len(os.Args) > 3 && os.Args[3] == "--hashes-only"
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		fail("%v", err)
	}
	msg, err := note.Open(raw, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(msg.Text, "\n")
	if len(lines) < 4 || lines[0] != verifier.Name() {
		fail("checkpoint is not for log %q", verifier.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("checkpoint root hash: %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	tree := tlog.Tree{N: size, Hash: root}
	hashes := tlog.TileHashReader(tree, dirReader{dir})
	computed, err := tlog.TreeHash(size, hashes)
	if err != nil {
		fail("tree hash: %v", err)
	}
	if computed != root {
		fail("tiles give root %v, checkpoint says %v", computed, root)
	}
	if !hashesOnly {
		for start := int64(0); start < size; start += 1 << height {
			width := size - start
			if width > 1<<height {
				width = 1 << height
			}
			t := tlog.Tile{H: height, L: -1, N: start >> height, W: int(width)}
			bundle, err := os.ReadFile(filepath.Join(dir, path(t)))
			if err != nil {
				fail("%v", err)
			}
			// The leaf hashes come through TileHashReader, which checks each tile it reads
			// against the checkpoint's root: an entry whose hash is among them is in the tree.
			indexes := make([]int64, width)
			for i := range indexes {
				indexes[i] = tlog.StoredHashIndex(0, start+int64(i))
			}
			leaves, err := hashes.ReadHashes(indexes)
			if err != nil {
				fail("leaf hashes of %s: %v", path(t), err)
			}
			for i := int64(0); i < width; i++ {
				if len(bundle) < 2 {
					fail("entry bundle %s ends before entry %d", path(t), start+i)
				}
				n := int(bundle[0])<<8 | int(bundle[1])
				if len(bundle) < 2+n {
					fail("entry %d is cut short", start+i)
				}
				entry := bundle[2 : 2+n]
				bundle = bundle[2+n:]
				if tlog.RecordHash(entry) != leaves[i] {
					fail("entry %d does not match its leaf hash in the tree", start+i)
				}
				// And, as a client holding one entry would, an inclusion proof for some.
				if (start+i)%997 == 0 || start+i == size-1 {
					proof, err := tlog.ProveRecord(size, start+i, hashes)
					if err != nil {
						fail("proof of entry %d: %v", start+i, err)
					}
					if err := tlog.CheckRecord(proof, size, root, start+i, tlog.RecordHash(entry)); err != nil {
						fail("entry %d does not match the tree: %v", start+i, err)
					}
				}
			}
			if len(bundle) != 0 {
				fail("entry bundle %s has %d bytes after its %d entries", path(t), len(bundle), width)
			}
		}
	}
	fmt.Printf("ok %d %s\n", size, base64.StdEncoding.EncodeToString(root[:]))
}
