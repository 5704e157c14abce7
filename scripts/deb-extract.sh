# Sourced by scripts/gpu-bundle.sh and scripts/mpi-bundle.sh (bundles for the bare GPU machine).
# deb_extract DEST PKG...: `apt-get download` the Debian packages and `dpkg -x` each into DEST
# (created), naming them in DEST/PACKAGES; documentation removed. Fails naming a package that
# did not download.
deb_extract() {
  local dest="$1"
  shift
  local tmp
  tmp="$(mktemp -d)"
  chmod 777 "$tmp"  # apt-get download as root hands the file to user _apt
  (cd "$tmp" && apt-get download "$@" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
  for p in "$@"; do
    ls "$tmp"/"${p}"_*.deb >/dev/null 2>&1 || { echo "deb_extract: apt-get download $p failed" >&2; rm -rf "$tmp"; return 1; }
  done
  mkdir -p "$dest"
  for deb in "$tmp"/*.deb; do
    dpkg -x "$deb" "$dest"
    basename "$deb" >> "$dest/PACKAGES"
  done
  rm -rf "$tmp" "$dest/usr/share/doc" "$dest/usr/share/doc-base" "$dest/usr/share/lintian" "$dest/usr/share/man"
}
