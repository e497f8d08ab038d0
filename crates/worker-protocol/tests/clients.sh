# What every Nix client does against our nix-daemon (tests/clients.rs):
# sh clients.sh meta|content, with
#   U     the daemon's store URL          C      the URL to read contents through
#   F     a directory of files to add     TOP    a closure copied in (DEP: its dependency)
#   TEXT  text for builtins.toFile        FRESH  a fresh local store to copy into
#   UNIQUE  makes this run's local path new
# Each answer follows a "== name" line; the test judges them.
set -eu
sec() { echo "== $1"; }
U=$U
case $1 in
meta)
    sec info
    nix store info --store "$U" 2>&1 || nix store ping --store "$U" 2>&1 || nix ping-store --store "$U" 2>&1
    sec add-recursive
    nix-store --store "$U" --add "$F/flat.txt"
    sec add-dir
    nix-store --store "$U" --add "$F/dir"
    sec add-fixed
    nix-store --store "$U" --add-fixed sha256 "$F/flat.txt"
    sec add-fixed-recursive
    nix-store --store "$U" --add-fixed --recursive sha256 "$F/dir"
    sec add-text
    nix-instantiate --store "$U" --eval --read-write-mode -E "builtins.toFile \"snix-text\" \"$TEXT\""
    sec requisites
    nix-store --store "$U" -qR "$TOP"
    sec referrers
    nix-store --store "$U" -q --referrers "$DEP"
    sec deriver
    nix-store --store "$U" -q --deriver "$TOP"
    sec path-info
    nix path-info --store "$U" --json -r "$TOP" 2>/dev/null
    echo
    sec copy-to
    mkdir -p /tmp/snix-local
    echo "local $UNIQUE" >/tmp/snix-local/local.txt
    p=$(nix-store --add /tmp/snix-local/local.txt)
    nix copy --to "$U" "$p" 2>/dev/null
    nix-store --store "$U" -q --hash "$p"
    nix-store -q --hash "$p"
    sec verify
    nix-store --store "$U" --verify --check-contents >/dev/null 2>&1 && echo verified
    ;;
content)
    sec verify-path
    for p in $(nix-store --store "$U" -qR "$TOP"); do
        nix-store --store "$C" --verify-path "$p"
    done
    echo verified
    sec copy-from
    nix copy --no-check-sigs --from "$C" --to "$FRESH" "$TOP" 2>/dev/null
    nix-store --store "$FRESH" --verify-path "$TOP" && echo copied
    sec dump
    # (`nix-store --dump` dumps a file system path and ignores --store)
    { nix store dump-path --store "$C" "$TOP" 2>/dev/null || nix dump-path --store "$C" "$TOP"; } | sha256sum | cut -d' ' -f1
    ;;
esac
