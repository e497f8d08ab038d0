# Nix's own local-overlay checks (its 11 functional tests: check-post-init,
# redundant-add, build, verify, delete-refs, bad-uris, add-lower,
# delete-duplicate, optimise, gc and stale-file-handle; written from what
# they check, with writes into the lower store pushed into our nix-daemon
# and damage done through it), with Nix's own nix-daemon serving the
# overlay on top of ours.
# Run as root in a chroot (tests/local_overlay.rs) with:
#   /snix        our stack: nd.sock (our nix-daemon), mnt (snix-mount), files/;
#                or, for the control, lower/ (a plain local store) and files/
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
# a change to the lower store is in its directory once the change returned
at_once() { eval "$1" || fail "not so once the lower store's change returned: $1"; }
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# the lower store: ours (our nix-daemon, real= our mount), or for the
# control a plain local store (/snix/lower), as paths.sh says
A=${LOWER_URL:-'unix:///snix/nd.sock?real=/snix/mnt'}
lowerdir=${LOWER_DIR:-/snix/mnt}
# A, URL-encoded; and a lower store URL whose store directory is not lowerdir
lower=${LOWER_URL_ENCODED:-'unix%3A%2F%2F%2Fsnix%2Fnd.sock%3Freal%3D%2Fsnix%2Fmnt'}
bad_lower=${BAD_LOWER_URL_ENCODED:-'unix%3A%2F%2F%2Fsnix%2Fnd.sock%3Freal%3D%2Fopt%2Fbad'}
upper=/opt/upper/nix/store
mkdir -p $upper /opt/work /nix/store /nix/var/nix
mount -t overlay overlay -o lowerdir=$lowerdir,upperdir=$upper,workdir=/opt/work /nix/store
# check-mount is on (the default): Nix compares these options with its URL
cp /etc/nix/nix.conf /opt/nix.conf
# as in Nix's tests: with derivations kept, the overlay's garbage collector
# looks up a collected derivation's outputs, which copies the rows of those
# still in the lower store back into the overlay's database; a lower store
# cleared after that leaves rows without files (stale-file-handle)
echo "keep-derivations = false" >>/opt/nix.conf
# the overlay is mounted again after Nix deletes an upper copy of a lower
# path (its remount-hook, as Nix's tests give it; the old mount API: the
# new one cannot remount an overlay)
export LIBMOUNT_FORCE_MOUNT2=always
printf '#!/bin/sh\nexec mount -o remount "$1"\n' >/opt/remount.sh
chmod +x /opt/remount.sh
echo "store = local-overlay://?lower-store=$lower&upper-layer=$upper&remount-hook=/opt/remount.sh" >>/opt/nix.conf
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
[ -e "$lowerdir/${TOP#/nix/store/}" ] || fail "$TOP is not in the lower layer"
cmp -s "$lowerdir/${TOP#/nix/store/}" "$TOP" || fail "$TOP differs between the lower layer and the overlay"
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

echo "== bad-uris"
# check-mount refuses a store URL whose root, lower or upper is not what
# the overlay at its store directory was mounted with
for bad in "local-overlay://?root=/opt/bad-root&lower-store=$lower&upper-layer=$upper" \
    "local-overlay://?lower-store=$bad_lower&upper-layer=$upper" \
    "local-overlay://?lower-store=$lower&upper-layer=/opt/bad-upper"; do
    mkdir -p /opt/bad-root /opt/bad /opt/bad-upper
    out=$(nix doctor --store "$bad" 2>&1) && fail "Nix took the bad store URL $bad"
    case $out in *"overlay filesystem"*"mounted incorrectly"*) ;; *) fail "$bad: $out" ;; esac
done
echo "ok bad-uris"

echo "== add-lower"
# a path added to the overlay lands in the upper layer; one pushed into our
# store after the overlay missed it is there once the overlay is mounted
# again (our mount keeps no stale miss under it)
echo "Add to overlay store" >/opt/overlay-file
overlay_path=$(nix-store --store $B --add /opt/overlay-file)
in_upper "$overlay_path" && [ -e "$overlay_path" ] || fail "$overlay_path is not in the upper layer"
echo "Add to lower store" >/opt/lower-file
lower_path=$(nix-store --store /opt/scratch-store --add /opt/lower-file) # its path, from any store
[ -e "$lower_path" ] && fail "$lower_path is there before it was added"
[ "$(nix-store --store "$A" --add /opt/lower-file)" = "$lower_path" ] || fail "the lower store gave another path"
# (our daemon returned once our mount confirmed it dropped its miss)
at_once '[ -e "$lowerdir/${lower_path#/nix/store/}" ]'
mount -o remount /nix/store
[ "$(cat "$lower_path")" = "Add to lower store" ] || fail "$lower_path, added to the lower store after a miss, is not visible after a remount"
echo "ok add-lower"

echo "== delete-duplicate"
# a path in both layers: deleting it through the overlay deletes only the
# upper copy (Nix mounts the overlay again through its remount-hook), and
# the lower copy shows through
echo "a duplicate" >/opt/dup
dup=$(nix-store --store $B --add /opt/dup)
in_upper "$dup" || fail "$dup is not in the upper layer"
[ "$(nix-store --store "$A" --add /opt/dup)" = "$dup" ] || fail "the lower store gave another path"
at_once '[ -e "$lowerdir/${dup#/nix/store/}" ]'
[ "$(stat -c %i "$dup")" = "$(stat -c %i "$upper/${dup#/nix/store/}")" ] || fail "the overlay does not show the upper copy of $dup"
nix-store --store $B --delete "$dup" >/dev/null 2>&1 || fail "deleting the upper copy of $dup"
in_upper "$dup" && fail "the upper copy of $dup is still there"
in_lower "$dup" || fail "deleting through the overlay reached the lower store"
[ "$(cat "$dup")" = "a duplicate" ] || fail "the lower copy of $dup does not show through"
# (Nix's test also compares the overlay's inode number with the lower
# file's; overlayfs maps inode numbers of a lower layer on another file
# system, ours among them, so those differ whichever copy is shown)
echo "ok delete-duplicate"

echo "== optimise"
# the overlay's optimise deletes upper copies of paths the lower store has
echo "Duplicate" >/opt/dup-file
dup=$(nix-store --store $B --add /opt/dup-file)
[ "$(nix-store --store "$A" --add /opt/dup-file)" = "$dup" ] || fail "the lower store gave another path"
at_once '[ -e "$lowerdir/${dup#/nix/store/}" ]'
mount -o remount /nix/store
in_upper "$dup" || fail "$dup is not in the upper layer"
out=$(nix-store --store $B --optimise 2>&1) || fail "optimise: $out"
in_upper "$dup" && fail "optimise left the upper copy of $dup"
[ "$(cat "$dup")" = "Duplicate" ] || fail "the lower copy of $dup does not show through after optimise"
echo "ok optimise"

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
  args = [ "-c" "read x < \${builtins.storePath "$DEP"}/data; echo \"\$x kept, from $DEP\" > \$out" ];
}
EOF2
kept=$(nix-build --store $B --no-out-link /opt/gc.nix)
[ "$(nix-store --store $B -q --references "$kept")" = "$DEP" ] || fail "the root $kept should refer to $DEP"
ln -sfn "$kept" /nix/var/nix/gcroots/snix-test-root
live=$(nix-store --store $B --gc --print-live 2>&1) || fail "--print-live: $live"
case $live in *"$kept"*) ;; *) fail "--print-live lacks the root $kept: $live" ;; esac
case $live in *"$DEP"*) ;; *) fail "--print-live lacks $DEP, which the root refers to: $live" ;; esac
dead=$(nix-store --store $B --gc --print-dead 2>&1) || fail "--print-dead: $dead"
case $dead in *"$TOP"*) ;; *) fail "--print-dead lacks $TOP, a lower path no root reaches (does the overlay list the lower layer?): $dead" ;; esac
case $dead in *"$kept"*) fail "--print-dead lists the root $kept" ;; esac
out=$(nix-store --store $B --gc 2>&1) || fail "a collection with a root: $out"
[ "$(cat "$kept")" = "$(cat "$DEP/data") kept, from $DEP" ] || fail "the root $kept did not survive a collection"
rm /nix/var/nix/gcroots/snix-test-root
out=$(nix-store --store $B --gc 2>&1) || fail "a collection without roots: $out"
# (.links, Nix's hard-link directory, may stay, as in Nix's own test)
[ -z "$(ls $upper)" ] || fail "the upper layer still holds, after a collection without roots: $(ls $upper)"
in_lower "$TOP" && in_lower "$DEP" || fail "a collection on the overlay reached the lower store"
echo "ok gc"

echo "== verify-repair"
# Nix's verify test damages the lower store behind the overlay: a file of a
# path the overlay's database holds (and a referrer of it) disappears, and
# another path's contents change; the overlay's verify must name both and
# not a lower path its database never held, and --repair must restore both
# from a substituter. A store daemon's paths change only through it, so
# here one path is deleted through it, and another deleted and registered
# again with other contents (an export of it with changed bytes)
nix-store --store $B --realise "$TOP" >/dev/null || fail "realising $TOP on the overlay"
cp "$TOP" /opt/top-before
x=$(nix-store --store "$A" --add /snix/files/x)
at_once '[ -e "$lowerdir/${x#/nix/store/}" ]'
cat >/opt/refers-to-x.nix <<EOF3
derivation {
  name = "refers-to-x";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo \${builtins.storePath "$x"} > \$out" ];
}
EOF3
r=$(nix-build --store $B --no-out-link /opt/refers-to-x.nix) || fail "building a path that refers to $x"
[ "$(nix-store --store $B -q --references "$r")" = "$x" ] || fail "$r should refer to $x"
lower_only=$(nix-store --store "$A" --add /snix/files/lower-only-2)
out=$(nix-store --store $B --verify --check-contents 2>&1) || fail "verify before the damage: $out"
# what the overlay holds, as a local store, signed: the substituter of the repair
nix copy --no-check-sigs --to /opt/backup "$TOP" "$r" || fail "copying the closures to a backup store"
nix-store --generate-binary-cache-key backup /opt/backup.sec /opt/backup.pub
nix store sign --store /opt/backup --key-file /opt/backup.sec --recursive "$TOP" "$r" || fail "signing the backup"
nix-store --store "$A" --delete "$x" "$TOP" "$lower_only" >/dev/null 2>&1 || fail "deleting $x, $TOP and $lower_only from the lower store"
nix-store --store "$A" --import </snix/files/top-changed.export >/dev/null || fail "registering $TOP again with other contents"
at_once '[ ! -e "$lowerdir/${x#/nix/store/}" ] && ! cmp -s "$lowerdir/${TOP#/nix/store/}" /opt/top-before'
mount -o remount /nix/store
out=$(nix-store --store $B --verify --check-contents 2>&1) && fail "verify found nothing wrong with a damaged lower store: $out"
case $out in *"path '$x' disappeared, but it still has valid referrers!"*) ;; *) fail "verify did not report $x gone: $out" ;; esac
case $out in *"path '$TOP' was modified! expected hash"*) ;; *) fail "verify did not report $TOP changed: $out" ;; esac
case $out in *"$lower_only"*) fail "verify reported $lower_only, which the overlay's database never held: $out" ;; esac
out=$(nix-store --store $B --verify --check-contents --repair --option substituters /opt/backup \
    --option trusted-public-keys "$(cat /opt/backup.pub)" 2>&1) ||
    fail "verify --repair: $out"
case $out in *"copying path '$x'"*) ;; *) fail "the repair did not copy $x: $out" ;; esac
case $out in *"copying path '$TOP'"*) ;; *) fail "the repair did not copy $TOP: $out" ;; esac
in_upper "$x" && in_upper "$TOP" || fail "the repaired $x and $TOP are not in the upper layer"
cmp -s "$TOP" /opt/top-before || fail "$TOP after the repair is not what it was"
out=$(nix-store --store $B --verify --check-contents 2>&1) || fail "verify after the repair: $out"
echo "ok verify-repair"

echo "== stale-file-handle"
# Nix's stale-file-handle test: the lower store cleared while mounted, the
# same closure (derivations with input derivations) built on the overlay,
# then into the lower store, collected on the overlay, the lower store
# cleared again, and built on the overlay once more. Without a remount-hook
# that last build may meet overlayfs's stale entries ("Stale file
# handle"; Nix's test accepts either outcome, as Linux 6.19 and later no
# longer fail); with one, every step must succeed. Clearing the lower
# store is deleting every path through it; building into it is copying
# there what the overlay built.
cat >/opt/hermetic.nix <<'EOF4'
{ seed }:
let
  step = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" script ];
  };
  input1 = step "hermetic-input-1" "echo 'input 1, seed ${toString seed}' > $out";
  input2 = step "hermetic-input-2" "echo ${input1} > $out";
  input3 = step "hermetic-input-3" "echo ${input2} > $out";
in
step "hermetic" "read x < ${input3} && [ -n \"$x\" ] && echo built > $out"
EOF4
build_in() { nix-build --store "$1" /opt/hermetic.nix --arg seed 1 --no-out-link; }
clear_lower() {
    all=$(nix path-info --all --store "$A" 2>&1) || fail "listing the lower store: $all"
    if [ -n "$all" ]; then
        # shellcheck disable=SC2086
        out=$(nix-store --store "$A" --delete $all 2>&1) || fail "clearing the lower store: $out"
    fi
    [ -z "$(nix path-info --all --store "$A")" ] || fail "the lower store is not empty after clearing it"
    at_once '[ -z "$(ls "$lowerdir")" ]'
}
build_in_lower() {
    drv=$(nix-instantiate --store "$1" /opt/hermetic.nix --arg seed 1) || fail "instantiating on $1"
    drvs=$(nix-store --store "$1" -qR "$drv")
    # shellcheck disable=SC2086
    outputs=$(nix-store --store "$1" -q --outputs $(echo "$drvs" | grep '\.drv$'))
    # shellcheck disable=SC2086
    nix copy --no-check-sigs --from "$1" --to "$A" $drvs $outputs || fail "copying the closure into the lower store"
    at_once '[ -e "$lowerdir/${drv#/nix/store/}" ]'
}
trigger() { # on overlay store $1
    clear_lower
    build_in "$1" >/dev/null || fail "the first build on the overlay"
    build_in_lower "$1"
    out=$(nix-store --store "$1" --gc 2>&1) || fail "a collection on the overlay: $out"
    clear_lower
    build_in "$1" || fail "the build on the overlay after the lower store was cleared"
}
nohook="local-overlay://?lower-store=$lower&upper-layer=$upper"
if out=$(trigger "$nohook" 2>&1); then
    echo "without a remount-hook: no error"
else
    case $out in *"Stale file handle"*) echo "without a remount-hook: Stale file handle" ;; *) fail "without a remount-hook: $out" ;; esac
fi
mount -o remount /nix/store
(trigger $B) >/opt/trigger.out 2>&1 || { cat /opt/trigger.out; exit 1; }
hermetic=$(tail -1 /opt/trigger.out)
[ "$(cat "$hermetic")" = built ] || fail "$hermetic holds '$(cat "$hermetic")'"
in_upper "$hermetic" || fail "$hermetic is not in the upper layer"
in_lower "$hermetic" && fail "$hermetic is in the lower store, which was cleared"
echo "ok stale-file-handle"

echo "all checks passed"
