{
  description = "A content-addressed Nix store stack: castore, store, FUSE mount and nix-daemon";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # the daemons as the modules deploy them, plus Nix with local-overlay
      machine = pkgs: { ... }: {
        imports = [ self.nixosModules.default ];
        services.snix = {
          castore.enable = true;
          store.enable = true;
          mount.enable = true;
          nix-daemon.enable = true;
          nix-daemon.requireSigs = false;
          localOverlay.enable = true;
        };
        nix.package = pkgs.nixVersions.latest;
        environment.systemPackages = [ pkgs.hello ];
        virtualisation.memorySize = 2048;
      };
    in
    {
      packages = forAllSystems (pkgs: import ./nixos-modules/packages.nix { inherit pkgs; });

      # services.snix.package defaults to nixos-modules/packages.nix built with the system's nixpkgs
      nixosModules.default = ./nixos-modules;

      checks = forAllSystems (pkgs:
        let
          lower = "unix:///run/snix/nix-daemon.sock?real=/var/lib/snix-mount/store";
          # fill snix from the VM's own store (the default store is the overlay)
          fill = ''
            machine.wait_for_unit("snix-mount.service")
            machine.wait_for_unit("snix-nix-daemon.socket")
            machine.succeed("nix copy --no-check-sigs --from local --to unix:///run/snix/nix-daemon.sock ${pkgs.hello} ${pkgs.bash}")
            machine.wait_for_unit("nix-daemon.service")
          '';
        in
        {
          # the how-to, check-mount on: queries, a build using a lower path, new paths in the upper layer
          local-overlay = pkgs.testers.runNixOSTest {
            name = "snix-local-overlay";
            nodes.machine = machine pkgs;
            testScript = fill + ''
              closure = machine.succeed("nix-store -qR ${pkgs.hello}")
              assert "${pkgs.hello}" in closure
              machine.succeed("nix path-info --json --recursive ${pkgs.hello} | grep narHash")
              machine.succeed("nix-store --store '${lower}' --verify-path ${pkgs.hello}")
              out = machine.succeed(
                "nix-build --no-out-link -E 'derivation { name = \"uses-lower\"; system = \"${pkgs.stdenv.hostPlatform.system}\";"
                + " builder = \"${pkgs.bash}/bin/bash\"; args = [ \"-c\" \"${pkgs.hello}/bin/hello > $out\" ]; }'"
              ).strip()
              base = out.split("/")[-1]
              machine.succeed(f"test -e /var/lib/snix-overlay/upper/nix/store/{base}")
              machine.fail(f"test -e /var/lib/snix-mount/store/{base}")
            '';
          };
          # each daemon restarted in turn while Nix keeps querying
          restarts = pkgs.testers.runNixOSTest {
            name = "snix-restarts";
            nodes.machine = machine pkgs;
            testScript = fill + ''
              for unit in ["snix-castore", "snix-store", "snix-nix-daemon"]:
                  machine.succeed(f"systemctl restart {unit}.service")
                  machine.succeed("nix-store --store '${lower}' --verify-path ${pkgs.hello}")
                  machine.succeed("nix-store -qR ${pkgs.hello}")
            '';
          };
        });
    };
}
