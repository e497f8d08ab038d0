# Nix's own local-overlay checks (its functional tests check-post-init,
# redundant-add, build, verify and delete-refs) that apply to a read-only
# lower store, with Nix's own nix-daemon serving the overlay on top of ours.
# Run as root in a chroot (tests/local_overlay.rs) with:
#   /snix        our stack: nd.sock (our nix-daemon), mnt (snix-mount), files/
#   /nix, /run   fresh for this run
#   /snix/paths.sh sets TOP, DEP, DRV: a closure and its derivation, in our
#                  store; DEP is the source /snix/files/dep added with
#                  nix-store --add (a file: GC takes the environment's
#                  store paths for roots)
# A failed check prints "FAIL: …" and exits 1; the last line is "all checks passed".
set -eu
. /snix/paths.sh
fail() { echo "FAIL: $*"; exit 1; }
wait_for() { n=0; until eval "$1"; do n=$((n + 1)); [ $n -lt 300 ] || fail "timed out: $1"; sleep 0.1; done; }
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

A='unix:///snix/nd.sock?real=/snix/mnt'
upper=/opt/upper/nix/store
mkdir -p $upper /opt/work /nix/store /nix/var/nix
mount -t overlay overlay -o lowerdir=/snix/mnt,upperdir=$upper,workdir=/opt/work /nix/store
# check-mount is on (the default): Nix compares these options with its URL
lower='unix%3A%2F%2F%2Fsnix%2Fnd.sock%3Freal%3D%2Fsnix%2Fmnt'
cp /etc/nix/nix.conf /opt/nix.conf
echo "store = local-overlay://?lower-store=$lower&upper-layer=$upper" >>/opt/nix.conf
mount --bind /opt/nix.conf /etc/nix/nix.conf
nix-daemon 2>/opt/nix-daemon.log &
wait_for '[ -S /nix/var/nix/daemon-socket/socket ]'
export NIX_CONFIG='store = daemon'
B=daemon
in_upper() { [ -e "$upper/${1#/nix/store/}" ]; }
in_lower() { nix path-info --store "$A" "$1" >/dev/null 2>&1; }
same() { # what: compare one query on the lower store and on the overlay
    a=$(eval "$2 --store '$A'" 2>&1) || fail "$1 on the lower store: $a"
    b=$(eval "$2 --store $B" 2>&1) || fail "$1 on the overlay: $b"
    [ "$a" = "$b" ] || fail "$1: lower says '$a', the overlay '$b'"
    echo "ok $1: $a" | head -c 300; echo
}

echo "== check-post-init"
in_upper "$TOP" && fail "$TOP is in the upper layer before anything was done"
[ -e "/snix/mnt/${TOP#/nix/store/}" ] || fail "$TOP is not in the lower layer"
cmp -s "/snix/mnt/${TOP#/nix/store/}" "$TOP" || fail "$TOP differs between the lower layer and the overlay"
same requisites "nix-store --query --requisites $DRV"
same referrers "nix-store --query --referrers $DEP"
same deriver "nix-store --query --deriver $TOP"
same outputs "nix-store --query --outputs $DRV"
nix-store --verify-path --store "$A" "$TOP" || fail "verify-path on the lower store"
nix-store --verify-path --store $B "$TOP" || fail "verify-path on the overlay"
hash=$(basename "$TOP" | cut -d- -f1)
same path-from-hash-part "nix store path-from-hash-part $hash"
[ "$(nix store path-from-hash-part --store $B "$hash")" = "$TOP" ] || fail "path-from-hash-part gives another path"

echo "== redundant-add"
# the dependency's source is in the lower store; adding it again writes nothing to the upper layer
added=$(nix-store --store $B --add /snix/files/dep)
[ "$added" = "$DEP" ] || fail "re-adding the dependency gave $added, not $DEP"
in_upper "$DEP" && fail "a redundant add copied $DEP into the upper layer"
in_lower "$DEP" || fail "$DEP left the lower store"
echo "ok redundant-add"

echo "== build"
cat >/opt/build.nix <<EOF
derivation {
  name = "built-on-overlay";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "read x < \${builtins.storePath "$DEP"}/data; echo \"\$x $DEP\" > \$out" ];
}
EOF
built=$(nix-build --store $B --no-out-link /opt/build.nix)
in_upper "$built" || fail "$built is not in the upper layer"
in_lower "$built" && fail "$built reached the lower store"
nix-store --verify-path --store $B "$built" || fail "verify-path of $built on the overlay"
[ "$(nix-store --store $B -q --references "$built")" = "$DEP" ] || fail "$built should refer to $DEP"
echo "ok build: $built"

echo "== verify"
# a path added to the lower store behind the overlay's back is not the overlay's to verify
lower_only=$(nix-store --store "$A" --add /snix/files/lower-only)
in_lower "$lower_only" || fail "$lower_only is not in the lower store"
out=$(nix-store --store $B --verify --check-contents 2>&1) || fail "verify --check-contents on the overlay: $out"
case $out in *"$lower_only"*) fail "the overlay's verify reported a lower-only path: $out" ;; esac
echo "ok verify"

echo "== delete-refs"
out=$(nix-store --store $B --delete "$DEP" 2>&1) && fail "deleting $DEP, which $TOP and $built refer to, succeeded"
# (Nix ≤ 2.2x: "… because it's referenced by path …"; later: "… since it is still alive")
case $out in *"referenced by path"* | *"still alive"*) ;; *) fail "deleting a referenced path: $out" ;; esac
nix-store --store $B --delete "$built" || fail "deleting $built from the upper layer"
in_upper "$built" && fail "$built is still in the upper layer"
in_lower "$DEP" || fail "$DEP left the lower store"
echo "ok delete-refs"

echo "== gc"
# Nix's gc test, on a lower store that is ours: a root built on the overlay
# (it uses a lower path), what GC says is live and dead (the overlay must
# list the lower layer: a lower path no root reaches is dead), a collection
# with the root, then without it — after which the upper layer is empty and
# the lower store untouched
cat >/opt/gc.nix <<EOF2
derivation {
  name = "gc-root";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "read x < \${builtins.storePath "$DEP"}/data; echo \"\$x kept\" > \$out" ];
}
EOF2
kept=$(nix-build --store $B --no-out-link /opt/gc.nix)
ln -sfn "$kept" /nix/var/nix/gcroots/snix-test-root
live=$(nix-store --store $B --gc --print-live 2>&1) || fail "--print-live: $live"
case $live in *"$kept"*) ;; *) fail "--print-live lacks the root $kept: $live" ;; esac
case $live in *"$DEP"*) ;; *) fail "--print-live lacks $DEP, which the root refers to: $live" ;; esac
dead=$(nix-store --store $B --gc --print-dead 2>&1) || fail "--print-dead: $dead"
case $dead in *"$TOP"*) ;; *) fail "--print-dead lacks $TOP, a lower path no root reaches (does the overlay list the lower layer?): $dead" ;; esac
case $dead in *"$kept"*) fail "--print-dead lists the root $kept" ;; esac
out=$(nix-store --store $B --gc 2>&1) || fail "a collection with a root: $out"
[ "$(cat "$kept")" = "$(cat "$DEP/data") kept" ] || fail "the root $kept did not survive a collection"
rm /nix/var/nix/gcroots/snix-test-root
out=$(nix-store --store $B --gc 2>&1) || fail "a collection without roots: $out"
# (.links, Nix's hard-link directory, may stay, as in Nix's own test)
[ -z "$(ls $upper)" ] || fail "the upper layer still holds, after a collection without roots: $(ls $upper)"
in_lower "$TOP" && in_lower "$DEP" || fail "a collection on the overlay reached the lower store"
echo "ok gc"

echo "all checks passed"
