# Our packages for a given nixpkgs: the workspace built once, and one
# package per binary (a link into it). Shared by flake.nix, the top-level
# default.nix (`nix-build -A snix.snix-store`, as the how-to says) and the
# modules' default `services.snix.package`.
{ pkgs }:
let
  inherit (pkgs) lib;
  # the sources Cargo needs: no build output, no local state
  src = lib.cleanSourceWith {
    src = lib.cleanSource ../.;
    filter = path: type: !(builtins.elem (baseNameOf path) [ "target" "state" "result" ]);
  };
  workspace = pkgs.rustPlatform.buildRustPackage {
    pname = "snix-stack";
    version = "0.1.0";
    inherit src;
    cargoLock.lockFile = ../Cargo.lock;
    # the tests need the real Nix and root (FUSE, overlayfs); run by scripts/test.sh
    doCheck = false;
    meta = {
      description = "A content-addressed Nix store stack: castore, store, FUSE mount, nix-daemon and nar-bridge";
      platforms = lib.platforms.linux;
      mainProgram = "snix-store";
    };
  };
  # `snix-store mount` finds snix-mount beside its resolved executable
  binary = name: pkgs.runCommand name { meta.mainProgram = name; } ''
    mkdir -p $out/bin
    ln -s ${workspace}/bin/${name} $out/bin/${name}
  '';
in
{
  default = workspace;
  snix-stack = workspace;
  snix-castore = binary "snix-castore";
  snix-store = binary "snix-store";
  snix-mount = binary "snix-mount";
  nix-daemon = binary "nix-daemon";
  nar-bridge = binary "nar-bridge";
}
