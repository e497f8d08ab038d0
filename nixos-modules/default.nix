# NixOS modules for the snix stack: one per daemon plus the local-overlay
# wiring. Each daemon is its own systemd unit (Type=notify) with a socket
# unit where it listens, so any one can be restarted or upgraded alone:
# clients reconnect.
#
#   castore → store → mount → our nix-daemon → overlay mount → Nix's daemon
#                 store → nar-bridge (HTTP binary cache)
{ lib, pkgs, ... }:
{
  imports = [
    ./castore.nix
    ./store.nix
    ./mount.nix
    ./nix-daemon.nix
    ./nar-bridge.nix
    ./local-overlay.nix
  ];

  options.services.snix = {
    package = lib.mkOption {
      type = lib.types.package;
      default = (import ./packages.nix { inherit pkgs; }).default;
      defaultText = lib.literalExpression "(import ./packages.nix { inherit pkgs; }).default";
      description = "The snix package (all binaries); each component's `package` defaults to it.";
    };
    runtimeDirectory = lib.mkOption {
      type = lib.types.str;
      default = "/run/snix";
      description = "Where the sockets live (the binaries look there by default, as root).";
    };
  };
}
