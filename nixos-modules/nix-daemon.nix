# Our nix-daemon (worker protocol) on a socket-activated unix socket: the
# lower store Nix's local-overlay store talks to.
{ config, lib, ... }:
let
  cfg = config.services.snix.nix-daemon;
  top = config.services.snix;
  opts = import ./options.nix { inherit lib top; };
  store = config.services.snix.store;
  mount = config.services.snix.mount;
  inherit (lib) mkOption mkEnableOption mkIf types escapeShellArgs optional concatStringsSep;
  storeAddrs = import ./store-addrs.nix { inherit lib store; };
in
{
  options.services.snix.nix-daemon = {
    enable = mkEnableOption "the snix nix-daemon (worker protocol over the snix store)";
    package = opts.package "nix-daemon";
    socket = mkOption {
      type = types.str;
      default = "${top.runtimeDirectory}/nix-daemon.sock";
      description = "Unix socket to listen on.";
    };
    socketMode = mkOption {
      type = types.strMatching "0?[0-7]{3}";
      default = "0660";
      description = "Permissions of the socket (access is also checked with allowedUsers).";
    };
    trustedUsers = mkOption {
      type = types.listOf types.str;
      default = [ "root" ];
      description = "Users (and @groups) with full rights, as nix.conf's trusted-users.";
    };
    allowedUsers = mkOption {
      type = types.listOf types.str;
      default = [ "*" ];
      description = "Users (and @groups) allowed to connect, as nix.conf's allowed-users.";
    };
    requireSigs = mkOption {
      type = types.bool;
      default = true;
      description = "Require signatures by trustedPublicKeys on input-addressed paths.";
    };
    trustedPublicKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Keys (`name:base64`) whose signatures are trusted.";
    };
    extraArgs = opts.extraArgs "nix-daemon";
  };

  config = mkIf cfg.enable (opts.socketActivated {
    name = "snix-nix-daemon";
    description = "snix nix-daemon";
    inherit (cfg) socket;
    mode = cfg.socketMode;
    service = {
      wants = optional store.enable "snix-store.socket" ++ optional mount.enable "snix-mount.service";
      after = optional store.enable "snix-store.socket" ++ optional mount.enable "snix-mount.service";
      environment = storeAddrs // {
        SNIX_TRUSTED_USERS = concatStringsSep " " cfg.trustedUsers;
        SNIX_ALLOWED_USERS = concatStringsSep " " cfg.allowedUsers;
        SNIX_REQUIRE_SIGS = lib.boolToString cfg.requireSigs;
        SNIX_TRUSTED_PUBLIC_KEYS = concatStringsSep " " cfg.trustedPublicKeys;
      };
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/nix-daemon ${escapeShellArgs cfg.extraArgs}";
        # resolving peers' user and group names
        PrivateUsers = false;
      };
    };
  });
}
