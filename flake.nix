{
  description = "A content-addressed Nix store stack: castore, store, FUSE mount and nix-daemon";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The whole workspace builds once; each binary is a package of its own.
      workspace = pkgs: pkgs.rustPlatform.buildRustPackage {
        pname = "snix-stack";
        version = "0.1.0";
        src = pkgs.lib.cleanSource ./.;
        cargoLock.lockFile = ./Cargo.lock;
        # the tests need the real Nix and root (FUSE, overlayfs); run by scripts/test.sh
        doCheck = false;
      };
    in
    {
      packages = forAllSystems (pkgs: rec {
        default = workspace pkgs;
        snix-stack = default;
      });

      nixosModules.default = import ./nixos-modules;
    };
}
