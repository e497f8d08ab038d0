let
  sys = builtins.currentSystem;
  dep = derivation { name = "dep"; system = sys; builder = "/bin/sh"; outputs = [ "out" "dev" "lib" ]; args = [ "-c" "echo a > $out; echo b > $dev; echo c > $lib" ]; };
in {
  multi = dep;
  uses = derivation { name = "uses"; system = sys; builder = "/bin/sh"; args = [ "-c" "cat ${dep.dev} ${dep} > $out" ]; text = "quotes \" backslash \\ newline\n tab\t cr\r dollar $ done"; };
  fixed = derivation { name = "fixed"; system = sys; builder = "/bin/sh"; args = [ "-c" "echo fixed > $out" ]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = builtins.hashString "sha256" "fixed\n"; };
  fixedr = derivation { name = "fixed-r"; system = sys; builder = "/bin/sh"; args = [ "-c" "echo fixed > $out" ]; outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "sha256-r5ZN5eunDAw4jgWPuW4QWRX2STuORsxPjaiWeVpIWN0="; };
  attrs = derivation { name = "attrs"; system = sys; builder = "/bin/sh"; args = [ "-c" ". .attrs.sh; echo > $out" ]; __structuredAttrs = true; list = [ 1 "two" { three = 3; } ]; };
}
