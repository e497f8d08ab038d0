# nar-bridge: the snix store as a Nix HTTP binary cache, on a
# socket-activated socket (a unix socket for a reverse proxy by default, or
# a TCP address).
{ config, lib, ... }:
let
  cfg = config.services.snix.nar-bridge;
  top = config.services.snix;
  opts = import ./options.nix { inherit lib top; };
  store = config.services.snix.store;
  inherit (lib) mkOption mkEnableOption mkIf types escapeShellArgs optional optionalAttrs hasPrefix;
  storeAddrs = import ./store-addrs.nix { inherit lib store; };
in
{
  options.services.snix.nar-bridge = {
    enable = mkEnableOption "nar-bridge (the snix store as an HTTP binary cache)";
    package = opts.package "nar-bridge";
    listen = mkOption {
      type = types.str;
      default = "${top.runtimeDirectory}/nar-bridge.sock";
      example = "127.0.0.1:9000";
      description = ''
        Where to listen, as systemd's ListenStream= takes it: a unix socket
        path (for a reverse proxy) or a TCP address. A TCP address has no
        authentication: anyone who reaches it reads the whole store.
      '';
    };
    socketMode = mkOption {
      type = types.strMatching "0?[0-7]{3}";
      default = "0660";
      description = "Permissions of the unix socket.";
    };
    signingKeyFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/etc/snix/cache.sk";
      description = ''
        Secret key file (`nix-store --generate-binary-cache-key`) that signs
        every narinfo served. A string, not a Nix path, so the key is not
        copied into the world-readable store.
      '';
    };
    compression = mkOption {
      type = types.enum [ "none" "zstd" "xz" ];
      default = "none";
      description = "The NAR compression narinfos point at (Nix before 2.4 reads no zstd).";
    };
    priority = mkOption {
      type = types.ints.unsigned;
      default = 40;
      description = "nix-cache-info's Priority: Nix prefers substituters with lower ones.";
    };
    extraArgs = opts.extraArgs "nar-bridge";
  };

  config = mkIf cfg.enable (lib.mkMerge [
    {
      assertions = [{
        assertion = cfg.signingKeyFile == null || !(hasPrefix builtins.storeDir cfg.signingKeyFile);
        message = "services.snix.nar-bridge.signingKeyFile must not be in the Nix store (anyone could read it).";
      }];
    }
    (opts.socketActivated {
      name = "snix-nar-bridge";
      description = "snix nar-bridge (HTTP binary cache)";
      socket = cfg.listen;
      mode = cfg.socketMode;
      service = {
        wants = optional store.enable "snix-store.socket";
        after = optional store.enable "snix-store.socket";
        environment = storeAddrs // {
          SNIX_NAR_BRIDGE_COMPRESSION = cfg.compression;
        } // optionalAttrs (cfg.signingKeyFile != null) {
          SNIX_NAR_BRIDGE_SIGNING_KEY = cfg.signingKeyFile;
        };
        serviceConfig.ExecStart =
          "${cfg.package}/bin/nar-bridge --priority ${toString cfg.priority} ${escapeShellArgs cfg.extraArgs}";
      };
    })
  ]);
}
