// Package runtimeenv packs a job's working directory into a
// content-addressed archive on the driver, and unpacks it safely on a
// node: Ray's runtime_env working_dir.
//
// Ray uploads a working directory as a package named by a hash of its
// content (its gcs://_ray_pkg_<hash>.zip URI), so that a node fetches and
// unpacks each package once, however many jobs and workers use it, and a
// driver that packs the same tree again uploads nothing. This package
// does the same without Ray's zip: the archive is a deterministic tar
// stream (sorted entries; no times, owners or other traits of the machine
// that packed it) compressed with zstd, and its name, Package.Digest, is
// the SHA-256 of the uncompressed tar, so the same tree has the same name
// on any machine and with any compressor settings.
//
// Unpack treats its input as hostile, since a node unpacks what a peer
// uploaded: nothing it writes leaves the target directory, content and
// entries are capped, the digest is checked before the directory appears
// at its final path, and a failed unpack leaves nothing behind.
//
// The package does no networking: moving archives is the caller's job.
//
//	pkg, err := runtimeenv.Pack(runtimeenv.PackSpec{
//		WorkingDir: ".",
//		Excludes:   []string{"*.log", "data/"},
//	}, "")
//	if err != nil {
//		return err
//	}
//	defer pkg.Remove()
//	// ... upload pkg.Path under pkg.Digest; then, on a node:
//	_, err = runtimeenv.Unpack(download, filepath.Join(cache, digest), content, digest)
//
// Platform reads a binary's GOOS and GOARCH from its header, so that a
// job can ship builds for several platforms and each node runs its own.
package runtimeenv
