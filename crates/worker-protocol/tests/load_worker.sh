# One load client (tests/load.rs): until $DEADLINE (epoch seconds), sends
# requests to the daemon at $U in turn — path-info, -qR, an add, a copy —
# checks each answer, and prints a line per request: "op milliseconds ok",
# or "op milliseconds FAIL what". Answers are read from stdout only (a
# daemon's warnings go to stderr). Its files are in $W (a, b, c, d and the
# paths Nix 2.8 gave them in `expected`; `local`, copied from its own store).
# A request not answered within $T seconds fails (exit 124 from timeout).
set -u
T=60
local_path=$(nix-store --add "$W/local") || { echo "setup 0 FAIL adding $W/local to the client's store"; exit 1; }
i=0
while [ "$(date +%s)" -lt "$DEADLINE" ]; do
    t0=$(date +%s%N)
    case $((i % 4)) in
    0)
        op=path-info
        out=$(timeout $T nix path-info --store "$U" --json -r "$TOP" 2>"$W/err")
        case $out in *"$TOP_NAR_HASH"*) why= ;; *) why="no $TOP_NAR_HASH in: $out" ;; esac
        ;;
    1)
        op=requisites
        out=$(timeout $T nix-store --store "$U" -qR "$TOP" 2>"$W/err" | sort | tr '\n' ' ')
        [ "$out" = "$CLOSURE" ] && why= || why="-qR gave: $out"
        ;;
    2)
        op=add
        n=$((i / 4 % 4 + 1))
        f=$(echo a b c d | cut -d' ' -f$n)
        out=$(timeout $T nix-store --store "$U" --add "$W/$f" 2>"$W/err")
        want=$(sed -n "${n}p" "$W/expected")
        [ "$out" = "$want" ] && why= || why="--add $f gave $out, not $want"
        ;;
    3)
        op=copy-to
        out=$(timeout $T nix copy --no-check-sigs --to "$U" "$local_path" 2>"$W/err") && why= || why="copy --to failed"
        ;;
    esac
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    # (warnings on stderr are not failures; they are shown with one)
    if [ -z "$why" ]; then echo "$op $ms ok"; else echo "$op $ms FAIL $why; stderr: $(cat "$W/err")" | tr '\n' ' '; echo; fi
    i=$((i + 1))
done
